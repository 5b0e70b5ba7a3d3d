// The radar's metrics endpoint (radar --metrics-listen): served by a child process,
// `journal metrics --radar FILE --listen HOST:PORT` (the radar's own radar_*
// families; its journals are their own exporter's), never by the radar.
// The radar keeps HTTP off its hot path, and the Prometheus text is made in one
// place (journal/monitor/_exporter.py) for every process of the pipeline.
//
// The child is started with fork + exec (it needs PR_SET_PDEATHSIG, which
// posix_spawn cannot set), in its own process group (a Ctrl-C on the terminal goes
// to the radar, which stops it), stdin /dev/null, stdout and stderr into pipes:
//
//   * start() waits for its "serving http://..." line on stdout, or its exit, or a
//     deadline, and hands back the URL, or why it did not serve (its stderr, its
//     exit status): the radar says so and reads nothing.
//   * Once serving, a thread copies its stderr (a metrics file it cannot read, said
//     once) to the radar's stderr, and says when it ends before the radar stops it.
//     The thread blocks in read(2) and never touches the radar's state: the hot path
//     does not know the child exists.
//   * It gets SIGTERM when the radar dies, however it dies (PR_SET_PDEATHSIG; a
//     radar killed with SIGKILL leaves no exporter behind), and stop() (the
//     destructor too) sends it SIGTERM and reaps it on the radar's way out.
//
// Every descriptor is owned (FileDescriptor) and opened close-on-exec; the child
// gets only 0, 1 and 2.
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "radar_reader/mapping.hpp"

namespace radar::exporter {

// Why `path` cannot be executed ("" if it can): it must be a regular file this
// user may execute.
inline std::string executable_problem(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return errno_text(errno);
  if (!S_ISREG(info.st_mode)) return "not a regular file";
  if (::access(path.c_str(), X_OK) != 0) return "not executable (" + errno_text(errno) + ")";
  return {};
}

// The directory of the running program (/proc/self/exe's), "" if unknown.
inline std::string own_directory() {
  char path[PATH_MAX];
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return {};
  const std::string text(path, static_cast<std::size_t>(length));
  const std::size_t slash = text.rfind('/');
  if (slash == std::string::npos) return {};
  return slash == 0 ? "/" : text.substr(0, slash);
}

// A program found, or why none was.
struct Found {
  std::string path;     // empty: none
  std::string problem;  // why none (or why `given` cannot be run)
};

// `name` beside the running program (a wheel installs journal and radar in the same
// bin/), else the first on PATH that can be executed; "" if neither.
inline std::string find_program(const std::string& name) {
  if (const std::string own = own_directory(); !own.empty()) {
    const std::string beside = (own == "/" ? "" : own) + "/" + name;
    if (executable_problem(beside).empty()) return beside;
  }
  const char* path = std::getenv("PATH");
  if (path == nullptr) return {};
  const std::string directories = path;
  std::size_t begin = 0;
  while (begin <= directories.size()) {
    std::size_t end = directories.find(':', begin);
    if (end == std::string::npos) end = directories.size();
    const std::string directory = directories.substr(begin, end - begin);
    // An empty entry would mean the working directory: not a place to take a
    // program from unasked.
    if (!directory.empty() && executable_problem(directory + "/" + name).empty())
      return directory + "/" + name;
    begin = end + 1;
  }
  return {};
}

// "exit status 2", "killed by signal 9 (Killed)": a waitpid status.
inline std::string status_text(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  return "wait status " + std::to_string(status);
}

// A pipe, both ends close-on-exec (the child gets its end by dup2 onto 1 or 2).
struct Pipe {
  FileDescriptor read;
  FileDescriptor write;

  static Pipe make() {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw JournalError("pipe2: " + errno_text(errno));
    return {FileDescriptor(ends[0]), FileDescriptor(ends[1])};
  }
};

// The child's errno to the parent through `exec_error`, and its end.
[[noreturn]] inline void child_failed(int exec_error) {
  const int error = errno;
  const ssize_t written = ::write(exec_error, &error, sizeof error);
  (void)written;
  ::_exit(127);
}

// The child's side between fork and exec: async-signal-safe calls only.
[[noreturn]] inline void exec_child(char* const* argv, pid_t parent, int null_in, int out,
                                    int err, int exec_error) {
  // The radar's handlers would swallow a SIGTERM that comes before exec (the death
  // signal of a radar dying just now): the default, which ends the child.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  ::sigaction(SIGTERM, &default_action, nullptr);
  ::sigaction(SIGINT, &default_action, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setpgid(0, 0);  // a terminal's Ctrl-C is the radar's to pass on
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) child_failed(exec_error);
  if (::getppid() != parent) ::_exit(127);  // the radar died before prctl took
  // Onto 0, 1 and 2 (dup2 clears close-on-exec; an end already there has it cleared).
  const int moves[3][2] = {{null_in, STDIN_FILENO}, {out, STDOUT_FILENO}, {err, STDERR_FILENO}};
  for (const auto& [from, to] : moves) {
    if (from == to ? ::fcntl(to, F_SETFD, 0) != 0 : ::dup2(from, to) < 0)
      child_failed(exec_error);
  }
  ::execv(argv[0], argv);
  child_failed(exec_error);
}

// Writes all of `size` bytes to `fd` (a pipe or terminal may take them in parts).
inline void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;  // stderr gone: nothing to tell anyone
    data += written;
    size -= static_cast<std::size_t>(written);
  }
}

// `journal metrics ... --listen HOST:PORT` as the radar's child (see the top).
class MetricsExporter {
 public:
  struct Started {
    enum class How { kServing, kExited, kTimedOut, kInterrupted, kNotStarted };
    How how = How::kNotStarted;
    std::string url;          // kServing: what it serves ("http://127.0.0.1:9108/metrics")
    std::string stderr_text;  // what it said on stderr before serving, or until it exited
    int status = 0;           // kExited: its waitpid status
    std::string error;        // kNotStarted: why exec (or fork) failed
  };

  MetricsExporter() = default;
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;
  ~MetricsExporter() { stop(std::chrono::seconds(10)); }

  // Starts `argv` (argv[0] its path) and waits for a stdout line "serving URL", its
  // exit, `timeout`, or `interrupted` (checked when a signal wakes the wait). Only
  // when serving is the child kept (then pid() is its id, and its stderr is copied
  // to the radar's from here on); otherwise it has been reaped.
  Started start(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                const std::atomic<bool>& interrupted) {
    Started started;
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    FileDescriptor null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_in.valid()) return not_started(started, "/dev/null: " + errno_text(errno));
    Pipe out = Pipe::make();
    Pipe err = Pipe::make();
    Pipe exec_error = Pipe::make();  // an errno if exec failed; closed by exec
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return not_started(started, "fork: " + errno_text(errno));
    if (pid == 0)
      exec_child(args.data(), parent, null_in.get(), out.write.get(), err.write.get(),
                 exec_error.write.get());
    pid_ = pid;
    out.write.reset();
    err.write.reset();
    exec_error.write.reset();
    int error = 0;
    ssize_t got;
    do got = ::read(exec_error.read.get(), &error, sizeof error);
    while (got < 0 && errno == EINTR);
    if (got == static_cast<ssize_t>(sizeof error)) {
      reap();
      return not_started(started, errno_text(error));
    }
    out_ = std::move(out.read);
    err_ = std::move(err.read);
    wait_until_serving(started, std::chrono::steady_clock::now() + timeout, interrupted);
    if (started.how == Started::How::kServing) forward_stderr();
    return started;
  }

  // The child's process id while it runs, else -1.
  pid_t pid() const { return pid_; }

  // Whether it ended before stop() was called (said on stderr when it did).
  bool ended_early() const { return ended_early_.load(std::memory_order_acquire); }

  // SIGTERM, then its exit awaited up to `timeout` (SIGKILL after), and reaped.
  // Its waitpid status, or -1 if none was running.
  int stop(std::chrono::milliseconds timeout) {
    if (pid_ < 0) return -1;
    stopping_.store(true, std::memory_order_release);
    ::kill(pid_, SIGTERM);
    // Its stdout closes when it exits: no other process holds that pipe's end.
    if (!wait_for_end(out_.get(), std::chrono::steady_clock::now() + timeout))
      ::kill(pid_, SIGKILL);
    const int status = reap();
    if (forwarder_.joinable()) forwarder_.join();  // its stderr ended with it
    out_.reset();
    err_.reset();
    return status;
  }

 private:
  static Started not_started(Started& started, std::string error) {
    started.how = Started::How::kNotStarted;
    started.error = std::move(error);
    return started;
  }

  // Reads its stdout (for the serving line) and stderr (kept, to say why if it
  // exits) until it serves, exits, the deadline passes or `interrupted` is set.
  void wait_until_serving(Started& started, std::chrono::steady_clock::time_point deadline,
                          const std::atomic<bool>& interrupted) {
    std::string out_text;
    bool out_open = true;
    bool err_open = true;
    while (out_open) {
      if (const std::size_t end = out_text.find('\n'); end != std::string::npos) {
        const std::string line = out_text.substr(0, end);
        out_text.erase(0, end + 1);
        if (line.rfind("serving ", 0) == 0) {
          started.how = Started::How::kServing;
          started.url = line.substr(8);
          return;
        }
        continue;  // another line before it: not ours to show
      }
      if (interrupted.load(std::memory_order_relaxed)) {
        stop(std::chrono::seconds(10));
        started.how = Started::How::kInterrupted;
        return;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ::kill(pid_, SIGKILL);
        reap();
        started.how = Started::How::kTimedOut;
        return;
      }
      pollfd fds[2] = {{out_.get(), POLLIN, 0}, {err_open ? err_.get() : -1, POLLIN, 0}};
      if (::poll(fds, 2, static_cast<int>(left.count())) < 0) continue;  // EINTR: look again
      if (fds[0].revents != 0) out_open = read_some(out_.get(), out_text);
      if (fds[1].revents != 0) err_open = read_some(err_.get(), started.stderr_text);
    }
    // Its stdout closed: it is exiting. What it said on stderr, then its status.
    while (err_open && wait_readable(err_.get(), deadline))
      err_open = read_some(err_.get(), started.stderr_text);
    if (err_open) ::kill(pid_, SIGKILL);  // stdout closed but still running: not ours
    started.status = reap();
    started.how = Started::How::kExited;
    out_.reset();
    err_.reset();
  }

  // Appends what `fd` has to `text`; false at its end (or an error).
  static bool read_some(int fd, std::string& text) {
    char buffer[4096];
    ssize_t got;
    do got = ::read(fd, buffer, sizeof buffer);
    while (got < 0 && errno == EINTR);
    if (got <= 0) return false;
    text.append(buffer, static_cast<std::size_t>(got));
    return true;
  }

  // Until `fd` is readable (data or its end); false at the deadline.
  static bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd ready{fd, POLLIN, 0};
      const int polled = ::poll(&ready, 1, static_cast<int>(left.count()));
      if (polled > 0) return true;
      if (polled == 0) return false;
    }
  }

  // Until `fd` (the child's stdout) ends, what it writes thrown away; false at the
  // deadline.
  static bool wait_for_end(int fd, std::chrono::steady_clock::time_point deadline) {
    std::string ignored;
    while (wait_readable(fd, deadline)) {
      if (!read_some(fd, ignored)) return true;
      ignored.clear();
    }
    return false;
  }

  // waitpid on the child; its status.
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

  // From now on its stderr goes to the radar's, by a thread that blocks in read(2)
  // (SIGINT and SIGTERM blocked in it: they stay the main thread's to take).
  void forward_stderr() {
    sigset_t blocked;
    sigset_t previous;
    ::sigemptyset(&blocked);
    ::sigaddset(&blocked, SIGINT);
    ::sigaddset(&blocked, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &blocked, &previous);
    forwarder_ = std::thread([this, fd = err_.get(), pid = pid_]() {
      std::string text;
      while (read_some(fd, text)) {
        write_all(STDERR_FILENO, text.data(), text.size());
        text.clear();
      }
      if (!stopping_.load(std::memory_order_acquire)) {
        ended_early_.store(true, std::memory_order_release);
        std::fprintf(stderr,
                     "radar: journal metrics (pid %d) ended: the metrics are no longer "
                     "served; the radar reads on\n",
                     static_cast<int>(pid));
      }
    });
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }

  pid_t pid_ = -1;
  FileDescriptor out_;
  FileDescriptor err_;
  std::thread forwarder_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ended_early_{false};
};

}  // namespace radar::exporter

// Unit tests of the radar's --metrics-listen child (exporter.hpp), with /bin/sh
// scripts standing in for `journal metrics`: the serving line waited for and its URL
// taken, an exit before it (its stderr and status kept), the deadline, a program that
// cannot be run, an interruption, the stop (SIGTERM, reaped), and where the journal
// program is looked for. The real child against the real radar: tests/
// test_radar_metrics_listen.py.
#include "radar_reader/exporter.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.hpp"

namespace {

using radar::exporter::MetricsExporter;
using How = MetricsExporter::Started::How;

const std::atomic<bool> kGoOn{false};
constexpr std::chrono::seconds kLong{30};  // never reached when it works

std::vector<std::string> shell(const std::string& script) { return {"/bin/sh", "-c", script}; }

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

void test_serving_line_then_stop() {
  MetricsExporter exporter;
  const auto started = exporter.start(
      shell("echo starting; echo 'serving http://127.0.0.1:9/metrics'; exec sleep 1000"), kLong,
      kGoOn);
  CHECK(started.how == How::kServing);
  CHECK(started.url == "http://127.0.0.1:9/metrics");
  const pid_t pid = exporter.pid();
  CHECK(pid > 0 && alive(pid));
  CHECK(::getpgid(pid) == pid);  // its own process group: a terminal's Ctrl-C is the radar's
  const int status = exporter.stop(kLong);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
  CHECK(exporter.pid() == -1);
  CHECK(!alive(pid));  // reaped, not a zombie
  CHECK(!exporter.ended_early());
  CHECK(exporter.stop(kLong) == -1);  // once only
}

void test_exit_before_serving() {
  MetricsExporter exporter;
  const auto started = exporter.start(
      shell("echo 'journal metrics: --listen :1: busy' >&2; exit 2"), kLong, kGoOn);
  CHECK(started.how == How::kExited);
  CHECK(WIFEXITED(started.status) && WEXITSTATUS(started.status) == 2);
  CHECK(started.stderr_text == "journal metrics: --listen :1: busy\n");
  CHECK(exporter.pid() == -1);
}

void test_deadline() {
  MetricsExporter exporter;
  const auto started =
      exporter.start(shell("exec sleep 1000"), std::chrono::milliseconds(50), kGoOn);
  CHECK(started.how == How::kTimedOut);
  CHECK(exporter.pid() == -1);
}

void test_program_that_cannot_run() {
  MetricsExporter exporter;
  const auto started = exporter.start({"/nonexistent/journal", "metrics"}, kLong, kGoOn);
  CHECK(started.how == How::kNotStarted);
  CHECK(started.error == "No such file or directory");
  CHECK(exporter.pid() == -1);
}

void test_interrupted() {
  const std::atomic<bool> stop{true};
  MetricsExporter exporter;
  const auto started = exporter.start(shell("exec sleep 1000"), kLong, stop);
  CHECK(started.how == How::kInterrupted);
  CHECK(exporter.pid() == -1);
}

void test_destructor_stops_it() {
  pid_t pid = -1;
  {
    MetricsExporter exporter;
    const auto started = exporter.start(shell("echo 'serving http://x/'; exec sleep 1000"),
                                        kLong, kGoOn);
    CHECK(started.how == How::kServing);
    pid = exporter.pid();
  }
  CHECK(pid > 0 && !alive(pid));
}

void test_find_program() {
  char directory[] = "/tmp/exporter_test.XXXXXX";
  CHECK(::mkdtemp(directory) != nullptr);
  const std::string dir = directory;
  const std::string program = dir + "/journal-exporter-test";
  const int fd = ::open(program.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  CHECK(fd >= 0);
  ::close(fd);
  const char* saved = std::getenv("PATH");
  const std::string path = saved ? saved : "";
  ::setenv("PATH", ("::" + dir + ":/nonexistent").c_str(), 1);
  CHECK(radar::exporter::find_program("journal-exporter-test").empty());  // not executable
  ::chmod(program.c_str(), 0755);
  CHECK(radar::exporter::find_program("journal-exporter-test") == program);
  CHECK(radar::exporter::executable_problem(program).empty());
  CHECK(radar::exporter::executable_problem(dir) == "not a regular file");
  ::setenv("PATH", path.c_str(), 1);
  ::unlink(program.c_str());
  ::rmdir(directory);
  CHECK(!radar::exporter::own_directory().empty());
}

void test_status_text() {
  CHECK(radar::exporter::status_text(2 << 8) == "exit status 2");
  CHECK(radar::exporter::status_text(SIGKILL) == "killed by signal 9 (Killed)");
}

}  // namespace

int main() {
  test_serving_line_then_stop();
  test_exit_before_serving();
  test_deadline();
  test_program_that_cannot_run();
  test_interrupted();
  test_destructor_stops_it();
  test_find_program();
  test_status_text();
  TEST_MAIN_END("exporter_test");
}

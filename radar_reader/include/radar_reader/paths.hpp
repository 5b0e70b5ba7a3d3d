// Which paths a reader may trust (docs/FORMAT.md, "Trusted paths"; the Python twin is
// journal/_paths.py): /dev/shm is writable by everyone, so records under a directory
// another user controls could be planted. Every component from "/" is opened with
// O_NOFOLLOW relative to the one before and checked: its owner is root, this user or
// a uid in JOURNAL_TRUSTED_UIDS; if others may write it, it has the sticky bit unless
// it is ours; a symbolic link is followed only if such an owner owns the link.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "radar_reader/mapping.hpp"

namespace radar {

inline constexpr int kMaxSymlinks = 40;  // links followed on one path (Linux's limit)
inline constexpr const char* kTrustedUidsEnv = "JOURNAL_TRUSTED_UIDS";

// root, this user, and the uids of JOURNAL_TRUSTED_UIDS (comma-separated).
inline std::vector<uid_t> trusted_uids() {
  std::vector<uid_t> uids{0, ::geteuid()};
  if (const char* listed = std::getenv(kTrustedUidsEnv)) {
    const std::string text = listed;
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t comma = text.find(',', start);
      const std::string item = text.substr(start, comma - start);
      if (!item.empty()) uids.push_back(static_cast<uid_t>(std::strtoul(item.c_str(), nullptr, 10)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return uids;
}

namespace paths_detail {

inline bool trusted(const std::vector<uid_t>& uids, uid_t owner) {
  for (const uid_t uid : uids)
    if (uid == owner) return true;
  return false;
}

inline std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why the directory `info` (named `where`) may not be trusted, or "".
inline std::string directory_problem(const struct stat& info, const std::string& where,
                                     const std::vector<uid_t>& uids) {
  if (!trusted(uids, info.st_uid))
    return "refusing " + where + ": owned by uid=" + std::to_string(info.st_uid) + " (mode " +
           mode_text(info.st_mode) + "), not by root or this user; its owner can replace what "
           "is under it (trust it with " + kTrustedUidsEnv + "=" +
           std::to_string(info.st_uid) + ")";
  if ((info.st_mode & S_IWOTH) && !(info.st_mode & S_ISVTX) && info.st_uid != ::geteuid())
    return "refusing " + where + ": writable by others without the sticky bit (mode " +
           mode_text(info.st_mode) + "); anyone may replace what is under it";
  return {};
}

inline void split_into(const std::string& path, std::vector<std::string>& pending) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::string part = path.substr(start, slash - start);
    if (!part.empty() && part != ".") parts.push_back(part);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  pending.insert(pending.begin(), parts.begin(), parts.end());
}

}  // namespace paths_detail

// Why `path` may not be trusted, or "" if every directory on it may be (a component
// that does not exist yet ends the walk: nothing is there to distrust). Never throws.
inline std::string untrusted_path_problem(const std::string& path) {
  using namespace paths_detail;
  const std::vector<uid_t> uids = trusted_uids();
  std::vector<std::string> pending;
  if (path.empty() || path[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) return "cannot resolve " + path + ": no working directory";
    split_into(cwd, pending);
    std::vector<std::string> relative;
    split_into(path, relative);
    pending.insert(pending.end(), relative.begin(), relative.end());
  } else {
    split_into(path, pending);
  }
  std::vector<FileDescriptor> held;  // "/" first, the current directory last
  std::vector<std::string> names;    // the path walked so far, for messages
  auto where = [&names] {
    std::string text;
    for (const std::string& name : names) text += "/" + name;
    return text.empty() ? std::string("/") : text;
  };
  auto start_at_root = [&]() -> std::string {
    held.clear();
    names.clear();
    held.emplace_back(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat info {};
    if (!held.back().valid() || ::fstat(held.back().get(), &info) != 0) return "cannot open /";
    return directory_problem(info, "/", uids);
  };
  if (std::string problem = start_at_root(); !problem.empty()) return problem;
  int links = 0;
  while (!pending.empty()) {
    const std::string name = pending.front();
    pending.erase(pending.begin());
    if (name == "..") {
      if (held.size() > 1) {
        held.pop_back();
        names.pop_back();
      }
      continue;
    }
    const int parent = held.back().get();
    struct stat link {};
    if (::fstatat(parent, name.c_str(), &link, AT_SYMLINK_NOFOLLOW) != 0)
      return {};  // not there (yet): the reader waits for its writer
    if (S_ISLNK(link.st_mode)) {
      const std::string at = where() + (names.empty() ? "" : "/") + name;
      if (!trusted(uids, link.st_uid))
        return "refusing symbolic link " + at + ": owned by uid=" + std::to_string(link.st_uid) +
               ", not by root or this user (trust it with " + kTrustedUidsEnv + ")";
      if (++links > kMaxSymlinks) return "too many symbolic links in " + path;
      char target[4096];
      const ssize_t length = ::readlinkat(parent, name.c_str(), target, sizeof target - 1);
      if (length < 0) return {};  // gone meanwhile
      target[length] = '\0';
      split_into(target, pending);
      if (target[0] == '/')
        if (std::string problem = start_at_root(); !problem.empty()) return problem;
      continue;
    }
    if (!S_ISDIR(link.st_mode)) return {};  // a file: the caller says what is wrong with it
    FileDescriptor next{::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    names.push_back(name);
    struct stat info {};
    if (!next.valid() || ::fstat(next.get(), &info) != 0) return {};  // unreadable: said elsewhere
    if (std::string problem = directory_problem(info, where(), uids); !problem.empty())
      return problem;
    held.push_back(std::move(next));
  }
  return {};
}

}  // namespace radar

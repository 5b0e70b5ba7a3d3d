// RAII for the two kernel resources the library holds: file descriptors and mappings.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace radar {

// Opening and setup failures; the hot path never throws (see JournalReader).
class JournalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A journal whose bytes break the format (a bad header field, a truncated file, a
// broken frame), found while opening: the message names the file and the offset.
// Apart from the other opening failures (no access, a wrong start position, a
// journal of another payload) because a program reports it as a corrupt journal.
class CorruptJournalError : public JournalError {
 public:
  using JournalError::JournalError;
};

inline std::string errno_text(int error) { return std::strerror(error); }

class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Opens without following a symlink (tmpfs is world-writable). Throws on error,
  // except ENOENT when `missing_ok`, which returns an invalid descriptor.
  static FileDescriptor open(const std::string& path, int flags, mode_t mode = 0,
                             bool missing_ok = false) {
    const int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
      const int error = errno;
      if (missing_ok && error == ENOENT) return FileDescriptor{};
      throw JournalError("cannot open " + path + ": " + errno_text(error) +
                         (error == ELOOP ? " (it is a symbolic link: refused)" : ""));
    }
    return FileDescriptor{fd};
  }

 private:
  int fd_ = -1;
};

class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // MAP_SHARED: the pages the writer writes, seen as it publishes them.
  static Mapping map(const FileDescriptor& fd, std::size_t size, bool writable,
                     const std::string& what, bool populate = false) {
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    const int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    void* data = ::mmap(nullptr, size, prot, flags, fd.get(), 0);
    if (data == MAP_FAILED) {
      throw JournalError("cannot map " + what + " (" + std::to_string(size) +
                         " bytes): " + errno_text(errno));
    }
    Mapping mapping;
    mapping.data_ = static_cast<std::uint8_t*>(data);
    mapping.size_ = size;
    return mapping;
  }

  std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }
  void reset() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace radar

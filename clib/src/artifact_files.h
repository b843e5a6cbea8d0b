// Files inside an artifact directory, read as dlavm/artifact/directory.py reads them (internal to clib:
// artifact.cc uses it). Every path is opened one component at a time relative to its parent directory
// with O_NOFOLLOW, so no symbolic link is followed, and only a regular file is read (a FIFO, device,
// socket or directory is refused without blocking). Refusals are ArtifactErrors of one line
// "artifact DIR: file \"REL\" ...".
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dlavm {
namespace artifact_files {

// An open file descriptor, closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }

 private:
  int fd_;
};

// The regular file `rel` under the directory `root` (see above); `size`: its size at open. `missing`: the
// message when it does not exist.
Fd open_inside(const std::string& dir, int root, const std::string& rel, const std::string& missing,
               uint64_t& size);

// Everything `fd` holds (to its end, as the file is now); at most `limit` bytes (`size`: its size at open).
std::vector<uint8_t> read_fd(const std::string& dir, const std::string& rel, int fd, uint64_t size,
                             uint64_t limit);

// The artifact directory, opened once; files are opened relative to it.
class Root {
 public:
  explicit Root(const std::string& dir);
  int fd() const { return fd_.get(); }
  std::vector<uint8_t> read(const std::string& rel, uint64_t limit, const std::string& missing) const;

 private:
  std::string dir_;
  Fd fd_;
};

// The refusal of a listed file that does not exist.
std::string missing_file(const std::string& rel);

}  // namespace artifact_files
}  // namespace dlavm

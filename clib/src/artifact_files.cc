#include "artifact_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "dlavm/artifact.h"

namespace dlavm {
namespace artifact_files {
namespace {

[[noreturn]] void refuse(const std::string& dir, const std::string& why) {
  throw ArtifactError("artifact " + dir + ": " + why);
}

std::string symlink_refusal(const std::string& rel, const std::string& where) {
  return "file \"" + rel + "\": \"" + where + "\" is a symbolic link; an artifact holds regular files only";
}

}  // namespace

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd open_inside(const std::string& dir, int root, const std::string& rel, const std::string& missing,
               uint64_t& size) {
  std::vector<std::string> parts;
  std::stringstream ss(rel);
  for (std::string part; std::getline(ss, part, '/');) parts.push_back(part);
  Fd fd;  // the directory reached so far (root while empty)
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    const int at = fd.get() >= 0 ? fd.get() : root;
    std::string where;
    for (size_t j = 0; j <= i; ++j) where += (j ? "/" : "") + parts[j];
    struct stat st{};
    if (::fstatat(at, parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) refuse(dir, missing);
      refuse(dir, "file \"" + rel + "\" cannot be opened (" + std::strerror(errno) + ")");
    }
    if (S_ISLNK(st.st_mode)) refuse(dir, symlink_refusal(rel, where));
    if (last && !S_ISREG(st.st_mode)) refuse(dir, "file \"" + rel + "\" is not a regular file");
    if (!last && !S_ISDIR(st.st_mode)) refuse(dir, "file \"" + rel + "\": \"" + where + "\" is not a directory");
    const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY);
    const int nfd = ::openat(at, parts[i].c_str(), flags);
    if (nfd < 0) {  // swapped for a link or removed since the stat
      if (errno == ELOOP) refuse(dir, symlink_refusal(rel, where));
      refuse(dir, "file \"" + rel + "\" cannot be opened (" + std::strerror(errno) + ")");
    }
    fd = Fd(nfd);
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) refuse(dir, "file \"" + rel + "\" is not a regular file");
  size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::vector<uint8_t> read_fd(const std::string& dir, const std::string& rel, int fd, uint64_t size,
                             uint64_t limit) {
  if (size > limit) {
    refuse(dir, "file \"" + rel + "\" holds " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(limit) + " it may");
  }
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(size));
  uint8_t buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) refuse(dir, "file \"" + rel + "\" cannot be read (" + std::strerror(errno) + ")");
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > limit) {
      refuse(dir, "file \"" + rel + "\" holds more than the " + std::to_string(limit) + " bytes it may");
    }
    out.insert(out.end(), buf, buf + n);
  }
}

Root::Root(const std::string& dir) : dir_(dir), fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (fd_.get() < 0) refuse(dir, std::string("cannot open the artifact directory (") + std::strerror(errno) + ")");
}

std::vector<uint8_t> Root::read(const std::string& rel, uint64_t limit, const std::string& missing) const {
  uint64_t size = 0;
  const Fd f = open_inside(dir_, fd_.get(), rel, missing, size);
  return read_fd(dir_, rel, f.get(), size, limit);
}

std::string missing_file(const std::string& rel) { return "file \"" + rel + "\" is missing"; }

}  // namespace artifact_files
}  // namespace dlavm

// POSIX implementation of file_map.h: open + fstat + mmap(PROT_READ).
#include "common/file_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rex {

namespace {

Status open_error(const std::string& path, int err) {
  if (err == ENOENT || err == ENOTDIR) return Status(StatusCode::kNotFound, path + ": file not found");
  return Status(StatusCode::kIoError, path + ": cannot open: " + std::strerror(err));
}

// Opens `path` for reading and checks that it is a regular file.
Result<int> open_regular(const std::string& path, struct stat& st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return open_error(path, errno);
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status(StatusCode::kIoError, path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(StatusCode::kIoError, path + ": not a regular file");
  }
  return fd;
}

}  // namespace

Result<std::unique_ptr<FileMap>> FileMap::open(const std::string& path) {
  struct stat st;
  Result<int> fd = open_regular(path, st);
  if (!fd.ok()) return fd.status();
  size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.value(), 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd.value());
      return Status(StatusCode::kIoError, path + ": mmap of " + std::to_string(size) +
                                              " bytes failed: " + std::strerror(err));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd.value());  // the mapping keeps the file alive
  return std::unique_ptr<FileMap>(new FileMap(path, data, size));
}

FileMap::~FileMap() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Result<std::string> read_file_to_string(const std::string& path) {
  struct stat st;
  Result<int> fd = open_regular(path, st);
  if (!fd.ok()) return fd.status();
  std::string bytes;
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.value(), &bytes[done], bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd.value());
      return Status(StatusCode::kIoError, path + ": read failed: " + std::strerror(err));
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  ::close(fd.value());
  bytes.resize(done);
  return bytes;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace rex

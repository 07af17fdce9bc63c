// Read-only access to files: a memory mapping that lives as long as its
// FileMap (unmapped in the destructor), and a whole-file read for small
// text files such as config.json. Errors name the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "rex/status.h"

namespace rex {

class FileMap {
 public:
  // Maps `path` read-only. Errors: kNotFound (no such file), kIoError
  // (a directory, unreadable, mmap failed). An empty file maps to size 0.
  static Result<std::unique_ptr<FileMap>> open(const std::string& path);
  ~FileMap();
  FileMap(const FileMap&) = delete;
  FileMap& operator=(const FileMap&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  FileMap(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The whole file as bytes. Errors: kNotFound, kIoError.
Result<std::string> read_file_to_string(const std::string& path);

// Whether `path` exists and is a regular file / a directory.
bool is_regular_file(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace rex

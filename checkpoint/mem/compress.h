// zstd for pages images (`dump --compress`, a crshim extension; CRIU cannot read such images): a
// streaming compressor writing into an image, and pages images read back into memory whichever way
// they were written.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/image/image.h"

namespace crshim::mem {

class PagesCompressor {
 public:
  static Result<PagesCompressor> create();
  PagesCompressor(PagesCompressor&&) noexcept;
  PagesCompressor& operator=(PagesCompressor&&) noexcept;
  ~PagesCompressor();
  // Compresses `size` bytes into `out`.
  Status write(image::Writer& out, const void* data, size_t size);
  // Ends the frame: the image is complete.
  Status finish(image::Writer& out);

 private:
  PagesCompressor() = default;
  Status pump(image::Writer& out, const void* data, size_t size, bool end);
  void* ctx_ = nullptr;  // ZSTD_CCtx
  std::vector<char> buf_;
};

// Whether the pages image `name` is a zstd stream (its size then says nothing of its pages).
Result<bool> is_compressed(int dirfd, const std::string& name);

// A pages image in memory, read-only: mapped from its file, or, when it is compressed, decompressed
// into anonymous memory first. Unmapped on destruction.
class PagesImage {
 public:
  static Result<PagesImage> open(int dirfd, const std::string& name);
  PagesImage() = default;
  PagesImage(PagesImage&& o) noexcept;
  PagesImage& operator=(PagesImage&& o) noexcept;
  ~PagesImage();
  const char* data() const { return static_cast<const char*>(base_); }
  size_t size() const { return size_; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;    // bytes of pages
  size_t mapped_ = 0;  // bytes mapped (a decompressed image is mapped a little larger)
};

}  // namespace crshim::mem

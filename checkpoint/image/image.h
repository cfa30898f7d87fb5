// CRIU-format image files: magic header, u32-length framed protobuf entries, raw payloads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::image {

inline constexpr uint32_t kImgCommon = 0x54564319;   // class magic of ordinary images
inline constexpr uint32_t kImgService = 0x55105940;  // class magic of stats-dump, stats-restore, irmap-cache
inline constexpr uint32_t kMagicInventory = 0x58313116;  // inventory.img: single word, no class magic

// Upper bound for one framed entry; CRIU's biggest (core with xsave, mm with many VMAs) are far below.
inline constexpr uint32_t kMaxEntrySize = 64u << 20;

// What an image file holds, identified by its magic (see catalog.h for the full table).
struct Kind {
  const char* name;                               // crit spelling: "CORE", "PAGEMAP", ...
  uint32_t magic;                                 // image magic (second header word)
  bool service;                                   // IMG_SERVICE class (stats)
  const google::protobuf::Message* head;          // first entry's type (pagemap_head, ghost_file_entry), or null
  const google::protobuf::Message* entry;         // type of every (other) entry; null for raw images
  // Raw bytes follow each entry (pipes-data, sk-queues, ...): how many, from the decoded entry.
  uint64_t (*payload_size)(const google::protobuf::Message& entry);
};

// Writes one image file in a directory. Entries are framed as u32 length + serialized message.
class Writer {
 public:
  // Creates (truncates) `name` in dirfd and writes the header for `kind`.
  static Result<Writer> create(int dirfd, const std::string& name, const Kind& kind);
  // An image with no magic at all (pages-N.img).
  static Result<Writer> create_raw(int dirfd, const std::string& name);

  Status write(const google::protobuf::Message& msg);
  Status write_raw(const void* data, size_t size);
  Status write_raw(std::string_view data) { return write_raw(data.data(), data.size()); }
  // Flushes buffered bytes; errors that only show at close (ENOSPC on NFS) surface here.
  Status close();

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  uint64_t bytes_written() const { return bytes_; }

 private:
  Writer(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  Status flush();
  UniqueFd fd_;
  std::string name_;
  std::string buf_;
  uint64_t bytes_ = 0;
};

// Writes an image holding exactly one entry (core, mm, ids, inventory, stats, ...).
Status write_single(int dirfd, const std::string& name, const Kind& kind, const google::protobuf::Message& msg);

// Reads one image file. Every length is bounded; truncation and bad magics are clear errors.
class Reader {
 public:
  // Opens `name` and checks its header against `kind` (inventory: single word).
  static Result<Reader> open(int dirfd, const std::string& name, const Kind& kind);
  // Opens `name` and identifies it by its magic (for `crshim show`).
  static Result<Reader> open_any(int dirfd, const std::string& name);
  // Wraps an already open fd positioned at offset 0 (tests, fuzzing).
  static Result<Reader> from_fd(UniqueFd fd, const std::string& name);

  const Kind& kind() const { return *kind_; }
  const std::string& name() const { return name_; }

  // Reads the next entry into msg. Returns false at a clean EOF (between entries).
  Result<bool> read(google::protobuf::Message& msg);
  // Reads exactly `size` raw bytes that follow the last entry.
  Status read_raw(void* data, size_t size);
  Result<std::string> read_raw(size_t size);
  // Reads exactly one entry (core, mm, ids, ...): zero or two entries are corruption.
  Status read_one(google::protobuf::Message& msg);

 private:
  Reader(UniqueFd fd, std::string name, const Kind* kind) : fd_(std::move(fd)), name_(std::move(name)), kind_(kind) {}
  Status fill(size_t want);
  UniqueFd fd_;
  std::string name_;
  const Kind* kind_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t offset_ = 0;  // file offset of buf_[pos_], for error messages
};

}  // namespace crshim::image

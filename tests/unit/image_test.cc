// Image library: framing round trips for every kind, headers, single-entry images, JSON rendering of
// real CRIU 4.2 images and `crshim show`.
#include <gtest/gtest.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/image/json.h"
#include "pipe-data.pb.h"
#include "tests/unit/image_set_builder.h"

namespace crshim {
namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;
using nlohmann::json;
using imgtest::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint32_t u32_at(const std::string& s, size_t off) {
  uint32_t v = 0;
  if (off + 4 <= s.size()) memcpy(&v, s.data() + off, 4);
  return v;
}

std::string u32_bytes(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

// Sets every field of `m` (required and optional, two elements per repeated field) to values derived
// from `seed`. Numbers stay small so that payload lengths taken from them stay small too.
void fill(pb::Message* m, uint32_t seed, int depth = 0) {
  const pb::Descriptor* d = m->GetDescriptor();
  const pb::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); i++) {
    const pb::FieldDescriptor* f = d->field(i);
    const int n = f->is_repeated() ? 2 : 1;
    for (int k = 0; k < n; k++) {
      const uint32_t v = (seed * 31 + uint32_t(f->number()) * 7 + uint32_t(k)) % 97 + 1;
      const bool rep = f->is_repeated();
      switch (f->cpp_type()) {
        case pb::FieldDescriptor::CPPTYPE_INT32: rep ? r->AddInt32(m, f, -int32_t(v)) : r->SetInt32(m, f, -int32_t(v)); break;
        case pb::FieldDescriptor::CPPTYPE_INT64: rep ? r->AddInt64(m, f, -int64_t(v)) : r->SetInt64(m, f, -int64_t(v)); break;
        case pb::FieldDescriptor::CPPTYPE_UINT32: rep ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v); break;
        case pb::FieldDescriptor::CPPTYPE_UINT64: rep ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v); break;
        case pb::FieldDescriptor::CPPTYPE_BOOL: rep ? r->AddBool(m, f, v & 1) : r->SetBool(m, f, v & 1); break;
        case pb::FieldDescriptor::CPPTYPE_DOUBLE: rep ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v); break;
        case pb::FieldDescriptor::CPPTYPE_FLOAT: rep ? r->AddFloat(m, f, float(v)) : r->SetFloat(m, f, float(v)); break;
        case pb::FieldDescriptor::CPPTYPE_ENUM: {
          const pb::EnumValueDescriptor* e = f->enum_type()->value(int(v % uint32_t(f->enum_type()->value_count())));
          rep ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
          break;
        }
        case pb::FieldDescriptor::CPPTYPE_STRING: {
          std::string s = f->type() == pb::FieldDescriptor::TYPE_BYTES ? std::string("\0\x01\xff", 3) + char(v)
                                                                      : "s" + std::to_string(v);
          rep ? r->AddString(m, f, s) : r->SetString(m, f, s);
          break;
        }
        case pb::FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 4) fill(rep ? r->AddMessage(m, f) : r->MutableMessage(m, f), seed + v, depth + 1);
          break;
      }
    }
  }
}

std::string payload_for(uint64_t size, uint32_t seed) {
  std::string p(size, '\0');
  for (size_t i = 0; i < p.size(); i++) p[i] = char(seed * 13 + i * 7);
  return p;
}

// The header CRIU writes for `kind`: one word for the inventory, class + image magic otherwise.
std::string header_of(const image::Kind& k) {
  if (k.magic == image::kMagicInventory) return u32_bytes(k.magic);
  return u32_bytes(k.service ? image::kImgService : image::kImgCommon) + u32_bytes(k.magic);
}

constexpr image::Type kAllTypes[] = {
    image::Type::inventory,   image::Type::pstree,      image::Type::core,       image::Type::ids,
    image::Type::mm,          image::Type::pagemap,     image::Type::fs,         image::Type::fdinfo,
    image::Type::files,       image::Type::pipes_data,  image::Type::fifo_data,  image::Type::tty_info,
    image::Type::tty_data,    image::Type::sk_queues,   image::Type::tcp_stream, image::Type::remap_fpath,
    image::Type::ghost_file,  image::Type::memfd_inode, image::Type::file_locks, image::Type::seccomp,
    image::Type::cgroup,      image::Type::mnts,        image::Type::utsns,      image::Type::ipc_var,
    image::Type::ipcns_shm,   image::Type::ipcns_msg,   image::Type::ipcns_sem,  image::Type::netns,
    image::Type::netdev,      image::Type::timens,      image::Type::userns,     image::Type::pidns,
    image::Type::stats,
};

// ---- framing ----

TEST(ImageFraming, EveryKindRoundTripsEntriesAndPayloads) {
  // kAllTypes lists every image::Type (a new one must be added there).
  ASSERT_EQ(std::size(kAllTypes), size_t(image::Type::stats) + 1);
  TempDir dir;
  ASSERT_GE(dir.fd(), 0);
  int covered = 0;
  for (image::Type type : kAllTypes) {
    const image::Kind& k = image::kind(type);
    EXPECT_EQ(image::find_kind(k.magic), &k) << k.name;
    if (!k.entry) continue;  // SysV payload formats: not used by the engine yet
    SCOPED_TRACE(k.name);
    const std::string name = std::string("kind-") + k.name + ".img";

    // head (if any), three filled entries, and an empty one when the type has no required field
    std::vector<std::unique_ptr<pb::Message>> msgs;
    if (k.head) {
      msgs.emplace_back(k.head->New());
      fill(msgs.back().get(), 1);
    }
    for (uint32_t seed = 2; seed < 5; seed++) {
      msgs.emplace_back(k.entry->New());
      fill(msgs.back().get(), seed);
    }
    std::unique_ptr<pb::Message> empty(k.entry->New());
    if (empty->IsInitialized()) msgs.push_back(std::move(empty));

    std::string expected = header_of(k);
    {
      auto w = image::Writer::create(dir.fd(), name, k);
      ASSERT_TRUE(w) << w.error().render();
      for (size_t i = 0; i < msgs.size(); i++) {
        auto st = w->write(*msgs[i]);
        ASSERT_TRUE(st) << st.error().render();
        std::string bytes = msgs[i]->SerializeAsString();
        expected += u32_bytes(uint32_t(bytes.size())) + bytes;
        bool is_head = k.head && i == 0;
        if (k.payload_size && !is_head) {
          std::string p = payload_for(k.payload_size(*msgs[i]), uint32_t(i));
          ASSERT_TRUE(w->write_raw(p));
          expected += p;
        }
      }
      ASSERT_TRUE(w->close());
      EXPECT_EQ(w->bytes_written(), expected.size());
    }
    // The bytes are exactly CRIU's framing, independent of our Reader.
    EXPECT_EQ(slurp(dir.file(name)), expected);

    auto r = image::Reader::open(dir.fd(), name, k);
    ASSERT_TRUE(r) << r.error().render();
    EXPECT_STREQ(r->kind().name, k.name);
    for (size_t i = 0; i < msgs.size(); i++) {
      bool is_head = k.head && i == 0;
      std::unique_ptr<pb::Message> got((is_head ? k.head : k.entry)->New());
      auto more = r->read(*got);
      ASSERT_TRUE(more) << more.error().render();
      ASSERT_TRUE(*more) << "entry " << i << " missing";
      EXPECT_TRUE(pb::util::MessageDifferencer::Equals(*got, *msgs[i])) << "entry " << i << ":\n"
                                                                         << got->DebugString();
      if (k.payload_size && !is_head) {
        auto p = r->read_raw(k.payload_size(*got));
        ASSERT_TRUE(p) << p.error().render();
        EXPECT_EQ(*p, payload_for(k.payload_size(*msgs[i]), uint32_t(i)));
      }
    }
    std::unique_ptr<pb::Message> extra(k.entry->New());
    auto end = r->read(*extra);
    ASSERT_TRUE(end) << end.error().render();
    EXPECT_FALSE(*end) << "entries after the last one written";
    covered++;
  }
  EXPECT_GE(covered, 30);
}

TEST(ImageFraming, EmptyMessageIsAZeroLengthFrame) {
  TempDir dir;
  const auto& k = image::kind(image::Type::seccomp);
  auto w = image::Writer::create(dir.fd(), "seccomp.img", k);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->write(seccomp_entry()));
  ASSERT_TRUE(w->close());
  EXPECT_EQ(slurp(dir.file("seccomp.img")), u32_bytes(image::kImgCommon) + u32_bytes(0x64413049) + u32_bytes(0));
  auto r = image::Reader::open(dir.fd(), "seccomp.img", k);
  ASSERT_TRUE(r);
  seccomp_entry e;
  e.add_seccomp_filters()->set_filter("stale");
  ASSERT_TRUE(r->read_one(e));
  EXPECT_EQ(e.seccomp_filters_size(), 0);  // read() replaces, it does not merge
}

TEST(ImageFraming, InventoryHasASingleWordHeader) {
  TempDir dir;
  inventory_entry inv;
  inv.set_img_version(2);
  inv.set_fdinfo_per_id(true);
  auto w = image::Writer::create(dir.fd(), "inventory.img", image::kind(image::Type::inventory));
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->write(inv));
  ASSERT_TRUE(w->close());
  std::string bytes = slurp(dir.file("inventory.img"));
  ASSERT_EQ(bytes.size(), 4 + 4 + inv.ByteSizeLong());
  EXPECT_EQ(u32_at(bytes, 0), 0x58313116u);
  EXPECT_EQ(u32_at(bytes, 4), uint32_t(inv.ByteSizeLong()));  // the length, not a class magic
  auto r = image::Reader::open_any(dir.fd(), "inventory.img");
  ASSERT_TRUE(r);
  EXPECT_STREQ(r->kind().name, "INVENTORY");
  inventory_entry back;
  ASSERT_TRUE(r->read_one(back));
  EXPECT_EQ(back.img_version(), 2u);
}

TEST(ImageFraming, StatsUseTheServiceClass) {
  TempDir dir;
  stats_entry st;
  auto* d = st.mutable_restore();
  d->set_pages_compared(1);
  d->set_pages_skipped_cow(2);
  d->set_forking_time(3);
  d->set_restore_time(4);
  auto w = image::Writer::create(dir.fd(), "stats-restore", image::kind(image::Type::stats));
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->write(st));
  ASSERT_TRUE(w->close());
  std::string bytes = slurp(dir.file("stats-restore"));
  EXPECT_EQ(u32_at(bytes, 0), 0x55105940u);
  EXPECT_EQ(u32_at(bytes, 4), 0x57093306u);
  auto r = image::Reader::open(dir.fd(), "stats-restore", image::kind(image::Type::stats));
  ASSERT_TRUE(r) << r.error().render();
  stats_entry back;
  ASSERT_TRUE(r->read_one(back));
  EXPECT_EQ(back.restore().restore_time(), 4u);

  // The stats magic under the common class is not a stats image.
  std::string forged = u32_bytes(image::kImgCommon) + bytes.substr(4);
  std::ofstream(dir.file("forged"), std::ios::binary) << forged;
  auto bad = image::Reader::open_any(dir.fd(), "forged");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::corrupt_image);
}

TEST(ImageFraming, OpenRefusesAnImageOfAnotherKind) {
  TempDir dir;
  auto st = imgtest::write_image_set(dir.fd(), imgtest::single_process_set());
  ASSERT_TRUE(st) << st.error().render();
  const std::string core = image::core_file(imgtest::kTestPid);
  auto r = image::Reader::open(dir.fd(), core, image::kind(image::Type::mm));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt_image);
  EXPECT_EQ(r.error().object, core);
  EXPECT_NE(r.error().render().find("holds a CORE image, expected MM"), std::string::npos) << r.error().render();

  auto missing = image::Reader::open(dir.fd(), "mm-1.img", image::kind(image::Type::mm));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().err, ENOENT);
  EXPECT_NE(missing.error().render().find("mm-1.img"), std::string::npos);
}

TEST(ImageFraming, ReadOneWantsExactlyOneEntry) {
  TempDir dir;
  const auto& k = image::kind(image::Type::fs);
  fs_entry e;
  e.set_cwd_id(1);
  e.set_root_id(2);
  for (int n : {0, 1, 2}) {
    std::string name = "fs-" + std::to_string(n) + ".img";
    auto w = image::Writer::create(dir.fd(), name, k);
    ASSERT_TRUE(w);
    for (int i = 0; i < n; i++) ASSERT_TRUE(w->write(e));
    ASSERT_TRUE(w->close());
    auto r = image::Reader::open(dir.fd(), name, k);
    ASSERT_TRUE(r) << r.error().render();
    fs_entry back;
    auto st = r->read_one(back);
    if (n == 1) {
      ASSERT_TRUE(st) << st.error().render();
      EXPECT_EQ(back.root_id(), 2u);
      continue;
    }
    ASSERT_FALSE(st) << n << " entries accepted";
    EXPECT_EQ(st.error().code, Errc::corrupt_image);
    EXPECT_EQ(st.error().object, name);
    EXPECT_NE(st.error().message.find(n == 0 ? "no entry" : "more than one"), std::string::npos) << st.error().render();
  }
}

TEST(ImageFraming, ATruncatedEntryTellsToDumpAgain) {
  TempDir dir;
  const auto& k = image::kind(image::Type::fs);
  fs_entry e;
  e.set_cwd_id(1);
  e.set_root_id(2);
  auto w = image::Writer::create(dir.fd(), "fs-1.img", k);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->write(e));
  ASSERT_TRUE(w->close());
  ASSERT_EQ(::truncate(dir.file("fs-1.img").c_str(), 8 + 4 + 1), 0);  // header, length, one byte of the entry
  auto r = image::Reader::open(dir.fd(), "fs-1.img", k);
  ASSERT_TRUE(r) << r.error().render();
  fs_entry back;
  auto st = r->read_one(back);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().render(),
            "read fs-1.img: at offset 8: truncated entry: 4 bytes announced, 1 present; "
            "hint: the image is truncated or damaged; re-create it with a new dump");
}

TEST(ImageFraming, WritingAMessageWithoutRequiredFieldsFails) {
  TempDir dir;
  auto w = image::Writer::create(dir.fd(), "pstree.img", image::kind(image::Type::pstree));
  ASSERT_TRUE(w);
  pstree_entry ps;
  ps.set_pid(1);
  ps.set_ppid(0);  // pgid and sid missing
  auto st = w->write(ps);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().object, "pstree.img");
  EXPECT_NE(st.error().message.find("pgid"), std::string::npos) << st.error().render();
  EXPECT_NE(st.error().message.find("sid"), std::string::npos) << st.error().render();
  ASSERT_TRUE(w->close());
  EXPECT_EQ(fs::file_size(dir.file("pstree.img")), 8u);  // nothing but the header reached the file
}

TEST(ImageFraming, LargeEntriesAndPayloadsCrossBufferBoundaries) {
  TempDir dir;
  const auto& pk = image::kind(image::Type::pipes_data);
  const size_t sizes[] = {100, 3u << 20, 70000, 0, (1u << 20) - 3};
  {
    auto w = image::Writer::create(dir.fd(), "pipes-data.img", pk);
    ASSERT_TRUE(w);
    for (size_t i = 0; i < std::size(sizes); i++) {
      pipe_data_entry e;
      e.set_pipe_id(uint32_t(1000 + i));
      e.set_bytes(uint32_t(sizes[i]));
      ASSERT_TRUE(w->write(e));
      ASSERT_TRUE(w->write_raw(payload_for(sizes[i], uint32_t(i))));
    }
    ASSERT_TRUE(w->close());
  }
  auto r = image::Reader::open(dir.fd(), "pipes-data.img", pk);
  ASSERT_TRUE(r);
  for (size_t i = 0; i < std::size(sizes); i++) {
    pipe_data_entry e;
    auto more = r->read(e);
    ASSERT_TRUE(more && *more) << i;
    EXPECT_EQ(e.pipe_id(), 1000 + i);
    auto p = r->read_raw(e.bytes());
    ASSERT_TRUE(p) << p.error().render();
    EXPECT_TRUE(*p == payload_for(sizes[i], uint32_t(i))) << "payload " << i << " differs";
  }
  pipe_data_entry none;
  auto end = r->read(none);
  ASSERT_TRUE(end);
  EXPECT_FALSE(*end);

  // One entry bigger than the read buffer: an mm with 20000 VMAs.
  mm_entry mm = imgtest::single_process_set().mm[imgtest::kTestPid];
  mm.clear_vmas();
  for (uint64_t i = 0; i < 20000; i++)
    *mm.add_vmas() = imgtest::make_vma(0x10000000 + i * 0x2000, 0x10001000 + i * 0x2000, 3, 0x22, 0x201);
  ASSERT_GT(mm.ByteSizeLong(), 256u * 1024);
  {
    auto w = image::Writer::create(dir.fd(), "mm-9.img", image::kind(image::Type::mm));
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->write(mm));
    ASSERT_TRUE(w->close());
  }
  auto mr = image::Reader::open(dir.fd(), "mm-9.img", image::kind(image::Type::mm));
  ASSERT_TRUE(mr);
  mm_entry back;
  ASSERT_TRUE(mr->read_one(back));
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(back, mm));
}

TEST(ImageFraming, RawWritesKeepTheirOrderAroundDirectWrites) {
  TempDir dir;
  auto w = image::Writer::create_raw(dir.fd(), "pages-1.img");
  ASSERT_TRUE(w);
  std::string a(10, 'a'), big(2u << 20, 'B'), c(4096, 'c');
  ASSERT_TRUE(w->write_raw(a));
  ASSERT_TRUE(w->write_raw(big));  // large: goes to the file directly, after what is buffered
  ASSERT_TRUE(w->write_raw(c));
  ASSERT_TRUE(w->close());
  EXPECT_EQ(w->bytes_written(), a.size() + big.size() + c.size());
  EXPECT_TRUE(slurp(dir.file("pages-1.img")) == a + big + c);
}

// ---- JSON rendering of real CRIU 4.2 images ----

const std::pair<const char*, const char*> kExpectedMagic[] = {
    {"core-", "CORE"},     {"fdinfo-", "FDINFO"},      {"files.img", "FILES"},  {"fs-", "FS"},
    {"ids-", "IDS"},       {"inventory.img", "INVENTORY"}, {"mm-", "MM"},       {"pagemap-", "PAGEMAP"},
    {"pipes-data.img", "PIPES_DATA"}, {"pstree.img", "PSTREE"}, {"seccomp.img", "SECCOMP"},
    {"stats-dump", "STATS"}, {"timens-", "TIMENS"}, {"cgroup.img", "CGROUP"}, {"ipcns-var-", "IPC_VAR"},
    {"mountpoints-", "MNTS"}, {"utsns-", "UTSNS"},
};

std::string expected_magic(const std::string& name) {
  for (const auto& [prefix, magic] : kExpectedMagic)
    if (name.rfind(prefix, 0) == 0) return magic;
  return "";
}

// Counts frames without the image library: header, then u32 length + body (+ pipe data) until EOF.
int count_frames(const std::string& bytes) {
  size_t off = u32_at(bytes, 0) == image::kMagicInventory ? 4 : 8;
  bool pipes = u32_at(bytes, 4) == 0x56453709;
  int n = 0;
  while (off + 4 <= bytes.size()) {
    uint32_t len = u32_at(bytes, off);
    off += 4;
    if (off + len > bytes.size()) return -1;
    if (pipes) {
      pipe_data_entry e;
      if (!e.ParseFromArray(bytes.data() + off, int(len))) return -1;
      off += e.bytes();
    }
    off += len;
    n++;
  }
  return off == bytes.size() ? n : -1;
}

std::vector<fs::path> fixture_dirs() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2"))
    if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_decodable(const std::string& name) {
  return (name.ends_with(".img") || name == "stats-dump") && !image::is_raw_file(name);
}

TEST(ImageJson, RendersEveryFixtureImage) {
  auto dirs = fixture_dirs();
  ASSERT_EQ(dirs.size(), 2u);
  int rendered = 0;
  for (const auto& d : dirs) {
    UniqueFd dfd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_GE(dfd.get(), 0) << d;
    for (const auto& e : fs::directory_iterator(d)) {
      std::string name = e.path().filename().string();
      if (!is_decodable(name)) continue;
      SCOPED_TRACE(d.filename().string() + "/" + name);
      auto text = image::image_to_json(dfd.get(), name);
      ASSERT_TRUE(text) << text.error().render();
      json j = json::parse(*text, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << text->substr(0, 300);
      EXPECT_EQ(j.value("magic", ""), expected_magic(name));
      ASSERT_TRUE(j["entries"].is_array());
      EXPECT_EQ(int(j["entries"].size()), count_frames(slurp(e.path())));
      rendered++;
    }
  }
  EXPECT_EQ(rendered, 25 + 22);
}

TEST(ImageJson, RendersKnownValues) {
  fs::path d = fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2" / "busybox-pipe-tree";
  UniqueFd dfd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(dfd.get(), 0);
  auto ps = image::image_to_json(dfd.get(), "pstree.img");
  ASSERT_TRUE(ps);
  json j = json::parse(*ps);
  ASSERT_EQ(j["entries"].size(), 3u);
  EXPECT_EQ(j["entries"][0]["pid"], 735);
  EXPECT_EQ(j["entries"][0]["ppid"], 0);
  EXPECT_EQ(j["entries"][1]["ppid"], 735);

  auto pm = image::image_to_json(dfd.get(), "pagemap-735.img");
  ASSERT_TRUE(pm);
  j = json::parse(*pm);
  ASSERT_EQ(j["entries"].size(), 8u);
  EXPECT_EQ(j["entries"][0]["pages_id"], 1);
  EXPECT_TRUE(j["entries"][1].contains("vaddr"));

  auto pd = image::image_to_json(dfd.get(), "pipes-data.img");
  ASSERT_TRUE(pd);
  j = json::parse(*pd);
  ASSERT_EQ(j["entries"].size(), 1u);
  EXPECT_EQ(j["entries"][0]["extra_bytes"], j["entries"][0]["bytes"]);
  EXPECT_EQ(j["entries"][0]["bytes"], 16);  // "hello-pipe-data\n"

  auto raw = image::image_to_json(dfd.get(), "pages-1.img");
  ASSERT_FALSE(raw);
  EXPECT_EQ(raw.error().code, Errc::invalid_argument);
}

// crit's JSON for the same image: every key crit prints we print too, with the same value (numbers as
// numbers, enums by name, bytes as base64). crit 3.17 lacks some 4.2 fields, so ours may have more.
void expect_covers(const json& crit, const json& ours, const std::string& at) {
  if (crit.is_object()) {
    ASSERT_TRUE(ours.is_object()) << at;
    for (const auto& [k, v] : crit.items()) {
      ASSERT_TRUE(ours.contains(k)) << at << "." << k << " missing";
      expect_covers(v, ours[k], at + "." + k);
    }
  } else if (crit.is_array()) {
    ASSERT_TRUE(ours.is_array()) << at;
    ASSERT_EQ(crit.size(), ours.size()) << at;
    for (size_t i = 0; i < crit.size(); i++) expect_covers(crit[i], ours[i], at + "[" + std::to_string(i) + "]");
  } else if (crit.is_string() && ours.is_string()) {
    std::string c = crit.get<std::string>();
    std::erase(c, '\n');  // python's base64 adds line breaks
    EXPECT_EQ(c, ours.get<std::string>()) << at;
  } else {
    EXPECT_EQ(crit, ours) << at;
  }
}

TEST(ImageJson, MatchesCritsRendering) {
  if (access("/usr/bin/crit", X_OK) != 0) GTEST_SKIP() << "crit is not installed";
  fs::path d = fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2" / "busybox-pipe-tree";
  UniqueFd dfd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(dfd.get(), 0);
  const std::vector<std::string> names = {"core-738.img", "mm-735.img", "files.img", "fdinfo-2.img", "stats-dump"};
  std::vector<FILE*> crit;
  for (const auto& n : names) crit.push_back(popen(("/usr/bin/crit decode -i '" + (d / n).string() + "' 2>&1").c_str(), "r"));
  for (size_t i = 0; i < names.size(); i++) {
    SCOPED_TRACE(names[i]);
    ASSERT_NE(crit[i], nullptr);
    std::string text;
    char buf[8192];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, crit[i])) > 0) text.append(buf, got);
    EXPECT_EQ(pclose(crit[i]), 0) << text;
    json want = json::parse(text, nullptr, false);
    ASSERT_FALSE(want.is_discarded()) << text.substr(0, 300);
    auto ours = image::image_to_json(dfd.get(), names[i]);
    ASSERT_TRUE(ours) << ours.error().render();
    json have = json::parse(*ours, nullptr, false);
    ASSERT_FALSE(have.is_discarded());
    expect_covers(want, have, names[i]);
  }
}

TEST(ImageJson, StringsThatAreNotUtf8StayJson) {
  TempDir dir;
  file_entry fe = imgtest::make_reg_file(1, std::string("/tmp/\xff\xfe-\"q\"\n", 12), 0, 0100644);
  auto w = image::Writer::create(dir.fd(), "files.img", image::kind(image::Type::files));
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->write(fe));
  ASSERT_TRUE(w->close());
  auto text = image::image_to_json(dir.fd(), "files.img");
  ASSERT_TRUE(text) << text.error().render();
  json j = json::parse(*text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << *text;
  EXPECT_EQ(j["entries"][0]["reg"]["name"], "/tmp/\ufffd\ufffd-\"q\"\n");
  EXPECT_EQ(j["entries"][0]["reg"]["pos"], 0);
}

// ---- crshim show ----

// The crshim binary: the build tells us, else $CRSHIM_BINARY, else next to the test binary's dir.
std::string crshim_binary() {
#ifdef CRSHIM_BINARY
  if (access(CRSHIM_BINARY, X_OK) == 0) return CRSHIM_BINARY;
#endif
  if (const char* env = getenv("CRSHIM_BINARY"); env && access(env, X_OK) == 0) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path p = self.parent_path().parent_path() / "crshim";
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

struct CommandRun {
  int status = -1;
  std::string out;
};

CommandRun run(const std::string& cmd) {
  CommandRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = pclose(p);
  return r;
}

TEST(CrshimShow, PrintsAFixtureDirectoryAsJson) {
  std::string bin = crshim_binary();
  if (bin.empty()) GTEST_SKIP() << "crshim binary not found (set CRSHIM_BINARY)";
  fs::path d = fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2" / "runc-busybox-ticker";
  CommandRun r = run(bin + " show '" + d.string() + "'");
  ASSERT_EQ(r.status, 0) << r.out.substr(0, 500);
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out.substr(0, 500);
  std::set<std::string> want, got;
  for (const auto& e : fs::directory_iterator(d))
    if (is_decodable(e.path().filename().string())) want.insert(e.path().filename().string());
  for (const auto& [k, v] : j.items()) got.insert(k);
  EXPECT_EQ(got, want);  // no pages-*, no tar payloads, no descriptors.json
  EXPECT_EQ(j["pstree.img"]["magic"], "PSTREE");
  ASSERT_EQ(j["pstree.img"]["entries"].size(), 2u);
  EXPECT_EQ(j["pstree.img"]["entries"][0]["pid"], 1);
  EXPECT_EQ(j["mountpoints-13.img"]["entries"].size(), 25u);
  EXPECT_EQ(j["core-1.img"]["entries"][0]["tc"]["comm"], "sh");
}

TEST(CrshimShow, PrintsOneFileAndFailsOnADamagedOne) {
  std::string bin = crshim_binary();
  if (bin.empty()) GTEST_SKIP() << "crshim binary not found (set CRSHIM_BINARY)";
  fs::path d = fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2" / "busybox-pipe-tree";
  CommandRun r = run(bin + " show '" + (d / "fdinfo-2.img").string() + "'");
  ASSERT_EQ(r.status, 0);
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["magic"], "FDINFO");
  EXPECT_EQ(j["entries"].size(), 5u);

  TempDir tmp;
  std::string bytes = slurp((d / "mm-735.img").string());
  std::ofstream(tmp.file("mm-735.img"), std::ios::binary) << bytes.substr(0, bytes.size() - 9);
  r = run(bin + " show '" + tmp.file("mm-735.img") + "' 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("mm-735.img"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("truncated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; hint: the image is truncated or damaged; re-create it with a new dump"), std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace crshim

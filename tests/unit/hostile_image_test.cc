// Hostile input: truncated, oversized, mis-tagged and random image bytes must give clear errors naming the
// file (never a crash), and the whole-set validator must refuse every inconsistency before restore acts.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/image/json.h"
#include "checkpoint/restore/images.h"
#include "pipe-data.pb.h"
#include "tcp-stream.pb.h"
#include "tests/unit/image_set_builder.h"

namespace crshim {
namespace {

namespace pb = google::protobuf;
using namespace imgtest;

std::string u32_bytes(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

std::string header(uint32_t image_magic, uint32_t klass = image::kImgCommon) {
  return u32_bytes(klass) + u32_bytes(image_magic);
}

std::string frame(const pb::Message& m) {
  std::string b = m.SerializeAsString();
  return u32_bytes(uint32_t(b.size())) + b;
}

// An anonymous file holding `bytes`, positioned at 0.
UniqueFd memfd_with(const std::string& bytes) {
  UniqueFd fd(memfd_create("hostile-image", MFD_CLOEXEC));
  if (fd.get() < 0) return fd;
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

// Reads every entry (head first where the kind has one) and every raw payload, like `show` does.
Result<int> read_everything(image::Reader& r) {
  const image::Kind& k = r.kind();
  if (!k.entry) return 0;
  int n = 0;
  for (;;) {
    std::unique_ptr<pb::Message> m(((n == 0 && k.head) ? k.head : k.entry)->New());
    bool got = CR_TRY(r.read(*m));
    if (!got) return n;
    if (k.payload_size && !(n == 0 && k.head)) CR_OK(r.read_raw(k.payload_size(*m)));
    n++;
  }
}

Result<int> open_and_read(const std::string& bytes, const std::string& name) {
  auto r = CR_TRY(image::Reader::from_fd(memfd_with(bytes), name));
  return read_everything(r);
}

// The error is a corrupt-image error about `name` that says something.
void expect_names_file(const Error& e, const std::string& name, const std::string& what = {}) {
  EXPECT_EQ(e.code, Errc::corrupt_image) << e.render();
  EXPECT_EQ(e.object, name) << e.render();
  EXPECT_NE(e.render().find(name), std::string::npos) << e.render();
  EXPECT_FALSE(e.message.empty()) << e.render();
  if (!what.empty()) {
    EXPECT_NE(e.message.find(what), std::string::npos) << e.render();
  }
}

// ---- Reader ----

struct SmallImage {
  std::string bytes;
  std::vector<size_t> boundaries;  // offsets at which a cut leaves a valid, shorter image
  size_t header = 8;
};

// pipes-data with three entries (payloads 5, 0, 12 bytes): cuts can fall in lengths, bodies or payloads.
SmallImage small_pipes_image() {
  SmallImage img;
  img.bytes = header(image::kind(image::Type::pipes_data).magic);
  img.boundaries.push_back(img.bytes.size());
  const uint32_t sizes[] = {5, 0, 12};
  for (uint32_t i = 0; i < 3; i++) {
    pipe_data_entry e;
    e.set_pipe_id(100 + i);
    e.set_bytes(sizes[i]);
    e.set_size(65536);
    img.bytes += frame(e) + std::string(sizes[i], char('x' + i));
    img.boundaries.push_back(img.bytes.size());
  }
  return img;
}

SmallImage small_pagemap_image() {
  SmallImage img;
  img.bytes = header(image::kind(image::Type::pagemap).magic);
  img.boundaries.push_back(img.bytes.size());
  pagemap_head h;
  h.set_pages_id(3);
  img.bytes += frame(h);
  img.boundaries.push_back(img.bytes.size());
  for (uint64_t i = 0; i < 3; i++) {
    img.bytes += frame(make_pagemap_entry(0x400000 + i * 0x10000, i + 1));
    img.boundaries.push_back(img.bytes.size());
  }
  return img;
}

TEST(HostileImage, TruncationAtEveryByteIsReported) {
  for (const SmallImage& img : {small_pipes_image(), small_pagemap_image()}) {
    for (size_t cut = 0; cut < img.bytes.size(); cut++) {
      SCOPED_TRACE("cut at " + std::to_string(cut));
      auto n = open_and_read(img.bytes.substr(0, cut), "cut.img");
      auto b = std::find(img.boundaries.begin(), img.boundaries.end(), cut);
      if (b != img.boundaries.end()) {
        ASSERT_TRUE(n) << n.error().render();
        EXPECT_EQ(*n, int(b - img.boundaries.begin()));
        continue;
      }
      ASSERT_FALSE(n) << "accepted " << *n << " entries";
      expect_names_file(n.error(), "cut.img", cut < img.header ? "too short" : "truncated");
    }
    auto whole = open_and_read(img.bytes, "whole.img");
    ASSERT_TRUE(whole) << whole.error().render();
    EXPECT_EQ(*whole, int(img.boundaries.size() - 1));
  }
}

TEST(HostileImage, OversizedLengthsAreRefused) {
  const std::string hdr = header(image::kind(image::Type::core).magic);
  for (uint32_t len : {0xffffffffu, image::kMaxEntrySize + 1, 0x80000000u}) {
    auto n = open_and_read(hdr + u32_bytes(len) + std::string(64, '\0'), "core-1.img");
    ASSERT_FALSE(n);
    expect_names_file(n.error(), "core-1.img", "exceeds the limit");
  }
  // At the limit but not there: a truncation, found without reading 64 MiB from anywhere.
  auto n = open_and_read(hdr + u32_bytes(image::kMaxEntrySize) + std::string(10, '\0'), "core-1.img");
  ASSERT_FALSE(n);
  expect_names_file(n.error(), "core-1.img", "truncated entry");
}

TEST(HostileImage, WrongMagicsAreRefused) {
  const uint32_t core = image::kind(image::Type::core).magic;
  auto bad_class = open_and_read(header(core, 0x12345678), "core-1.img");
  ASSERT_FALSE(bad_class);
  expect_names_file(bad_class.error(), "core-1.img", "unknown class magic 0x12345678");

  auto bad_magic = open_and_read(header(0xdeadbeef), "core-1.img");
  ASSERT_FALSE(bad_magic);
  expect_names_file(bad_magic.error(), "core-1.img", "unknown image magic 0xdeadbeef");

  auto wrong_class = open_and_read(header(core, image::kImgService), "core-1.img");
  ASSERT_FALSE(wrong_class);
  expect_names_file(wrong_class.error(), "core-1.img", "magic");

  auto stats_common = open_and_read(header(image::kind(image::Type::stats).magic), "stats-dump");
  ASSERT_FALSE(stats_common);
  expect_names_file(stats_common.error(), "stats-dump", "magic");

  // A raw pages image handed to the reader: its first word is data, not a magic.
  auto pages = open_and_read(std::string(4096, 'a'), "pages-1.img");
  ASSERT_FALSE(pages);
  expect_names_file(pages.error(), "pages-1.img", "magic");
}

TEST(HostileImage, GarbageProtobufIsRefused) {
  const std::string hdr = header(image::kind(image::Type::core).magic);
  auto garbage = open_and_read(hdr + u32_bytes(6) + std::string(6, '\xff'), "core-1.img");
  ASSERT_FALSE(garbage);
  expect_names_file(garbage.error(), "core-1.img", "cannot decode core_entry");

  // Well-formed wire data that lacks a required field.
  pstree_entry ps;
  ps.set_pid(1);
  std::string partial = ps.SerializePartialAsString();
  auto missing = open_and_read(header(image::kind(image::Type::pstree).magic) + u32_bytes(uint32_t(partial.size())) + partial,
                               "pstree.img");
  ASSERT_FALSE(missing);
  expect_names_file(missing.error(), "pstree.img", "ppid");

  // A required enum with a value the schema does not have (mtype = 99).
  const std::string unknown_enum = "\x08\x63";
  auto bad_enum = open_and_read(hdr + u32_bytes(2) + unknown_enum, "core-1.img");
  ASSERT_FALSE(bad_enum);
  expect_names_file(bad_enum.error(), "core-1.img", "mtype");

  // Wire type 4 (end group) where nothing was opened.
  auto bad_wire = open_and_read(hdr + u32_bytes(1) + "\x0c", "core-1.img");
  ASSERT_FALSE(bad_wire);
  expect_names_file(bad_wire.error(), "core-1.img", "cannot decode");
}

TEST(HostileImage, PayloadLongerThanTheFileIsRefused) {
  pipe_data_entry e;
  e.set_pipe_id(7);
  e.set_bytes(1000);
  auto n = open_and_read(header(image::kind(image::Type::pipes_data).magic) + frame(e) + std::string(10, 'p'),
                         "pipes-data.img");
  ASSERT_FALSE(n);
  expect_names_file(n.error(), "pipes-data.img", "truncated payload");

  // 2 x 0xffffffff bytes announced by a tcp stream: refused without allocating them up front.
  tcp_stream_entry t;
  const pb::Descriptor* d = t.GetDescriptor();
  for (int i = 0; i < d->field_count(); i++)
    if (d->field(i)->is_required()) t.GetReflection()->SetUInt32(&t, d->field(i), 0xffffffff);
  ASSERT_TRUE(t.IsInitialized());
  auto big = open_and_read(header(image::kind(image::Type::tcp_stream).magic) + frame(t) + "x", "tcp-stream-1.img");
  ASSERT_FALSE(big);
  expect_names_file(big.error(), "tcp-stream-1.img");
}

// Valid images of several kinds to mutate from.
std::vector<std::string> mutation_seeds() {
  std::vector<std::string> out;
  out.push_back(small_pipes_image().bytes);
  out.push_back(small_pagemap_image().bytes);
  ImageSetSpec s = single_process_set();
  out.push_back(header(image::kind(image::Type::core).magic) + frame(s.cores[kTestPid]));
  out.push_back(header(image::kind(image::Type::mm).magic) + frame(s.mm[kTestPid]));
  std::string files = header(image::kind(image::Type::files).magic);
  for (const auto& f : s.files) files += frame(f);
  out.push_back(files);
  out.push_back(u32_bytes(image::kMagicInventory) + frame(*s.inventory));
  out.push_back(header(image::kind(image::Type::stats).magic, image::kImgService) + frame(*s.stats));
  return out;
}

TEST(HostileImage, RandomBytesNeverCrashAndAlwaysNameTheFile) {
  std::mt19937 rng(20240611);
  const auto seeds = mutation_seeds();
  int errors = 0, clean = 0;
  for (int iter = 0; iter < 3000; iter++) {
    std::string bytes = seeds[rng() % seeds.size()];
    switch (iter % 4) {
      case 0:  // flip a few bytes
        for (int k = 1 + int(rng() % 4); k > 0; k--) bytes[rng() % bytes.size()] = char(rng());
        break;
      case 1:  // random tail after a valid header
        bytes.resize(8);
        for (size_t k = rng() % 200; k > 0; k--) bytes += char(rng());
        break;
      case 2:  // overwrite a 4-byte word (often a length) past the header
        if (bytes.size() > 12) {
          uint32_t v = rng() % 3 == 0 ? uint32_t(rng()) : uint32_t(rng() % 256);
          memcpy(bytes.data() + 8 + rng() % (bytes.size() - 12), &v, 4);
        }
        break;
      default:  // entirely random
        bytes.clear();
        for (size_t k = rng() % 64; k > 0; k--) bytes += char(rng());
        break;
    }
    auto n = open_and_read(bytes, "fuzz.img");
    if (n) {
      clean++;
    } else {
      errors++;
      expect_names_file(n.error(), "fuzz.img");
      if (::testing::Test::HasFailure()) FAIL() << "iteration " << iter;
    }
  }
  EXPECT_GT(errors, 1000);
  EXPECT_GT(clean, 50);
}

TEST(HostileImage, JsonOfRandomBytesIsJsonOrAnError) {
  std::mt19937 rng(7);
  const auto seeds = mutation_seeds();
  TempDir dir;
  ASSERT_GE(dir.fd(), 0);
  for (int iter = 0; iter < 300; iter++) {
    std::string bytes = seeds[rng() % seeds.size()];
    for (int k = 1 + int(rng() % 3); k > 0; k--) bytes[8 + rng() % (bytes.size() - 8)] = char(rng());
    {
      UniqueFd fd(openat(dir.fd(), "x.img", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      ASSERT_EQ(write(fd.get(), bytes.data(), bytes.size()), ssize_t(bytes.size()));
    }
    auto text = image::image_to_json(dir.fd(), "x.img");
    if (!text) {
      EXPECT_NE(text.error().render().find("x.img"), std::string::npos) << text.error().render();
      continue;
    }
    auto j = nlohmann::json::parse(*text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "iteration " << iter << ": " << *text;
  }
}

// ---- the whole-set validator ----

class HostileImageSet : public ::testing::Test {
 protected:
  // Writes the set after `mutate` and loads it.
  Result<restorer::ImageSet> load(const std::function<void(ImageSetSpec&)>& mutate,
                                  const std::function<void(const TempDir&)>& after = {}) {
    TempDir dir;
    ImageSetSpec s = single_process_set();
    mutate(s);
    auto st = write_image_set(dir.fd(), s);
    if (!st) {
      ADD_FAILURE() << "writing the set: " << st.error().render();
      return fail(st.error());
    }
    if (after) after(dir);
    return restorer::load_images(dir.fd());
  }

  void expect_refused(const std::function<void(ImageSetSpec&)>& mutate, const std::string& file,
                      const std::string& what, Errc code = Errc::corrupt_image,
                      const std::function<void(const TempDir&)>& after = {}) {
    auto set = load(mutate, after);
    ASSERT_FALSE(set) << "accepted";
    const Error& e = set.error();
    EXPECT_EQ(e.code, code) << e.render();
    EXPECT_EQ(e.object, file) << e.render();
    EXPECT_NE(e.render().find(file), std::string::npos) << e.render();
    EXPECT_NE(e.message.find(what), std::string::npos) << e.render();
  }

  static pstree_entry task(uint32_t pid, uint32_t ppid) {
    pstree_entry p;
    p.set_pid(pid);
    p.set_ppid(ppid);
    p.set_pgid(kTestPid);
    p.set_sid(kTestPid);
    p.add_threads(pid);
    return p;
  }

  // A second live process (child of the root) with everything it needs, so only the tested defect differs.
  static void add_child(ImageSetSpec& s, uint32_t pid, uint32_t ppid = kTestPid) {
    s.pstree.push_back(task(pid, ppid));
    s.cores[pid] = make_core(pid, true);
    s.ids[pid] = s.ids[kTestPid];
    s.ids[pid].set_files_id(pid);
    s.mm[pid] = s.mm[kTestPid];
    s.pagemaps[pid] = s.pagemaps[kTestPid];
    s.fs[pid] = s.fs[kTestPid];
  }

  const std::string core_ = image::core_file(kTestPid);
  const std::string mm_ = image::mm_file(kTestPid);
  const std::string pagemap_ = image::pagemap_file(kTestPid);
  const std::string fdinfo_ = image::fdinfo_file(kTestFilesId);
  const std::string fs_ = image::fs_file(kTestPid);
};

TEST_F(HostileImageSet, TheValidSetLoads) {
  auto set = load([](ImageSetSpec&) {});
  ASSERT_TRUE(set) << set.error().render();
  ASSERT_EQ(set->processes.size(), 1u);
  const auto& p = set->processes[0];
  EXPECT_EQ(p.pid(), kTestPid);
  EXPECT_TRUE(p.alive());
  EXPECT_EQ(p.cores.size(), 1u);
  EXPECT_EQ(p.mm.vmas_size(), 4);
  EXPECT_EQ(p.pagemap.size(), 3u);
  EXPECT_EQ(p.pages_id, kTestPagesId);
  EXPECT_EQ(p.fds.size(), 4u);
  EXPECT_EQ(set->files.size(), 5u);
  EXPECT_EQ(set->seccomp.seccomp_filters_size(), 1);

  auto tree = load([](ImageSetSpec& s) { add_child(s, 5000); });
  ASSERT_TRUE(tree) << tree.error().render();
  EXPECT_EQ(tree->processes.size(), 2u);
}

// What CRIU 4.2 itself wrote must pass: the validator is strict, not stricter than CRIU.
TEST_F(HostileImageSet, RealCriuImagesPassValidation) {
  for (const char* name : {"busybox-pipe-tree", "runc-busybox-ticker"}) {
    SCOPED_TRACE(name);
    std::string path = std::string(CRSHIM_FIXTURES_DIR) + "/criu-4.2/" + name;
    UniqueFd dir(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_GE(dir.get(), 0);
    auto set = restorer::load_images(dir.get());
    ASSERT_TRUE(set) << set.error().render();
    EXPECT_GE(set->processes.size(), 2u);
    for (const auto& p : set->processes) EXPECT_FALSE(p.pagemap.empty()) << p.pid();
  }
}

TEST_F(HostileImageSet, PstreeWithTwoRoots) {
  expect_refused([](ImageSetSpec& s) { add_child(s, 5000, 0); }, "pstree.img", "root");
}

TEST_F(HostileImageSet, PstreeChildBeforeItsParent) {
  expect_refused(
      [](ImageSetSpec& s) {
        add_child(s, 5002, 5001);
        add_child(s, 5001);
      },
      "pstree.img", "before its parent");
}

TEST_F(HostileImageSet, PstreeRootNotFirst) {
  expect_refused(
      [](ImageSetSpec& s) {
        add_child(s, 5000);
        std::swap(s.pstree[0], s.pstree[1]);
      },
      "pstree.img", "root");
}

TEST_F(HostileImageSet, PstreeDuplicatePid) {
  expect_refused([](ImageSetSpec& s) { s.pstree.push_back(task(kTestPid, kTestPid)); }, "pstree.img", "duplicate pid");
}

TEST_F(HostileImageSet, PstreeDuplicateThreadAcrossProcesses) {
  expect_refused(
      [](ImageSetSpec& s) {
        add_child(s, 5000);
        s.pstree[1].add_threads(kTestPid);
      },
      "pstree.img", "duplicate thread");
}

TEST_F(HostileImageSet, PstreeThreadListNotStartingWithThePid) {
  expect_refused(
      [](ImageSetSpec& s) {
        s.pstree[0].clear_threads();
        s.pstree[0].add_threads(kTestPid + 1);
        s.pstree[0].add_threads(kTestPid);
      },
      "pstree.img", "thread list");
  expect_refused([](ImageSetSpec& s) { s.pstree[0].clear_threads(); }, "pstree.img", "thread list");
}

TEST_F(HostileImageSet, EmptyPstree) {
  expect_refused([](ImageSetSpec& s) { s.pstree.clear(); }, "pstree.img", "no tasks");
}

TEST_F(HostileImageSet, MissingImages) {
  expect_refused([](ImageSetSpec& s) { s.cores.clear(); }, core_, "missing");
  expect_refused([](ImageSetSpec& s) { s.inventory.reset(); }, "inventory.img", "missing");
  expect_refused([](ImageSetSpec& s) { s.mm.clear(); }, mm_, "missing");
  expect_refused([](ImageSetSpec& s) { s.ids.clear(); }, image::ids_file(kTestPid), "missing");
  expect_refused([](ImageSetSpec& s) { s.pagemaps.clear(); }, pagemap_, "missing");
  expect_refused([](ImageSetSpec& s) { s.fs.clear(); }, fs_, "missing");
  expect_refused([](ImageSetSpec& s) { s.pages.clear(); }, image::pages_file(kTestPagesId), "missing");
  // a second thread listed without its core
  expect_refused([](ImageSetSpec& s) { s.pstree[0].add_threads(kTestPid + 1); }, image::core_file(kTestPid + 1),
                 "missing");
}

TEST_F(HostileImageSet, MissingFilesImage) {
  auto set = load([](ImageSetSpec&) {}, [](const TempDir& d) { unlinkat(d.fd(), "files.img", 0); });
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().code, Errc::corrupt_image) << set.error().render();
  EXPECT_EQ(set.error().object, "files.img");
}

TEST_F(HostileImageSet, CoreWithoutRegisters) {
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].clear_thread_info(); }, core_, "without registers");
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].clear_thread_core(); }, core_, "without registers");
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].clear_tc(); }, core_, "without task state");
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_thread_info()->mutable_fpregs()->mutable_xmm_space()->RemoveLast(); },
                 core_, "FPU");
}

TEST_F(HostileImageSet, SecondThreadWithoutRegisters) {
  auto two_threads = [](ImageSetSpec& s) {
    s.pstree[0].add_threads(kTestPid + 1);
    s.cores[kTestPid + 1] = make_core(kTestPid + 1, false);
  };
  auto ok = load(two_threads);
  ASSERT_TRUE(ok) << ok.error().render();
  EXPECT_EQ(ok->processes[0].cores.size(), 2u);
  const std::string core2 = image::core_file(kTestPid + 1);
  expect_refused([&](ImageSetSpec& s) { two_threads(s); s.cores[kTestPid + 1].clear_thread_info(); }, core2,
                 "without registers");
  // A thread core that claims to be dead does not excuse the missing registers of a live task.
  expect_refused(
      [&](ImageSetSpec& s) {
        two_threads(s);
        core_entry& c = s.cores[kTestPid + 1];
        c.clear_thread_info();
        *c.mutable_tc() = s.cores[kTestPid].tc();
        c.mutable_tc()->set_task_state(2);
      },
      core2, "without registers");
}

TEST_F(HostileImageSet, CoreOfAnotherArchitectureOrMode) {
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].set_mtype(core_entry::AARCH64); }, core_, "x86_64");
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_thread_info()->mutable_gpregs()->set_mode(COMPAT); },
                 core_, "32-bit", Errc::unsupported);
}

TEST_F(HostileImageSet, CoreWithAnUnknownTaskState) {
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_tc()->set_task_state(77); }, core_, "task state");
}

TEST_F(HostileImageSet, WrongSigactionCount) {
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_tc()->mutable_sigactions()->RemoveLast(); }, core_,
                 "62 signal actions");
  expect_refused([](ImageSetSpec& s) { *s.cores[kTestPid].mutable_tc()->add_sigactions() = s.cores[kTestPid].tc().sigactions(0); },
                 core_, "62 signal actions");
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_tc()->clear_sigactions(); }, core_, "legacy sigacts",
                 Errc::unsupported);
}

TEST_F(HostileImageSet, VmasOverlappingUnsortedOrUnaligned) {
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas(1)->set_end(kTestHeapStart + 0x1000); }, mm_, "overlap");
  expect_refused(
      [](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas()->SwapElements(1, 2); }, mm_, "not sorted");
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas(1)->set_start(kTestDataStart + 8); }, mm_, "bad range");
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas(1)->set_end(kTestDataStart); }, mm_, "bad range");
}

TEST_F(HostileImageSet, FileMappingOfAMissingFile) {
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas(0)->set_shmid(99); }, mm_, "missing file");
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].mutable_vmas(0)->set_shmid(kExeId + (1ull << 32)); }, mm_,
                 "missing file");
}

TEST_F(HostileImageSet, ExeFileMissingOrNotRegular) {
  expect_refused([](ImageSetSpec& s) { s.mm[kTestPid].set_exe_file_id(99); }, mm_, "exe_file_id");
  expect_refused(
      [](ImageSetSpec& s) {
        file_entry pipe;
        pipe.set_type(PIPE);
        pipe.set_id(6);
        s.files.push_back(pipe);
        s.mm[kTestPid].set_exe_file_id(6);
      },
      mm_, "exe_file_id");
}

TEST_F(HostileImageSet, PagemapEntrySpanningAdjacentVmasIsValid) {
  // Split the data VMA in two (as a partial mprotect would): the two-page entry now spans both.
  auto set = load([](ImageSetSpec& s) {
    auto* vmas = s.mm[kTestPid].mutable_vmas();
    vmas->Mutable(1)->set_end(kTestDataStart + 0x1000);
    vma_entry second = imgtest::make_vma(kTestDataStart + 0x1000, kTestDataStart + 0x2000, 1, 0x22, 0x201);
    *vmas->Add() = second;
    std::sort(vmas->begin(), vmas->end(), [](const vma_entry& a, const vma_entry& b) { return a.start() < b.start(); });
  });
  ASSERT_TRUE(set) << set.error().render();
  EXPECT_EQ(set->processes[0].mm.vmas_size(), 5);
}

TEST_F(HostileImageSet, PagemapEntriesOutsideVmasOrDisordered) {
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[1].set_vaddr(0x700000); }, pagemap_, "outside");
  // runs past the end of its VMA into a hole
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[0].set_nr_pages(3); }, pagemap_, "outside");
  // runs past the last VMA
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[2].set_nr_pages(3); }, pagemap_, "outside");
  expect_refused([](ImageSetSpec& s) { std::swap(s.pagemaps[kTestPid].entries[0], s.pagemaps[kTestPid].entries[1]); },
                 pagemap_, "unsorted");
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[0].set_vaddr(kTestDataStart + 1); }, pagemap_, "bad");
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[0].set_nr_pages(0); }, pagemap_, "bad");
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].entries[2].set_nr_pages(1ull << 60); }, pagemap_, "bad");
  // a pagemap image with the header only
  expect_refused([](ImageSetSpec&) {}, pagemap_, "no pagemap head", Errc::corrupt_image, [this](const TempDir& d) {
    const std::string hdr = header(image::kind(image::Type::pagemap).magic);
    UniqueFd fd(openat(d.fd(), pagemap_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    ASSERT_EQ(write(fd.get(), hdr.data(), hdr.size()), 8);
  });
}

TEST_F(HostileImageSet, PagesImageShorterThanThePagemapNeeds) {
  expect_refused([](ImageSetSpec& s) { s.pages[kTestPagesId].resize(4 * 4096); }, image::pages_file(kTestPagesId),
                 "pagemap needs 5");
  expect_refused([](ImageSetSpec& s) { s.pagemaps[kTestPid].head.set_pages_id(2); }, image::pages_file(2), "missing");
}

TEST_F(HostileImageSet, FdsReferencingMissingOrMistypedFiles) {
  expect_refused([](ImageSetSpec& s) { s.fdinfo[kTestFilesId][3].set_id(99); }, fdinfo_, "missing file");
  expect_refused([](ImageSetSpec& s) { s.fdinfo[kTestFilesId][3].set_type(PIPE); }, fdinfo_, "type");
  expect_refused([](ImageSetSpec& s) { s.fdinfo[kTestFilesId][3].set_fd(1); }, fdinfo_, "duplicate fd");
  expect_refused([](ImageSetSpec& s) { s.fdinfo[kTestFilesId][3].set_fd(0x7fffffff); }, fdinfo_, "bad");
}

TEST_F(HostileImageSet, FsReferencingMissingOrNonRegularFiles) {
  expect_refused([](ImageSetSpec& s) { s.fs[kTestPid].set_cwd_id(99); }, fs_, "cwd");
  expect_refused([](ImageSetSpec& s) { s.fs[kTestPid].set_root_id(99); }, fs_, "root");
  expect_refused(
      [](ImageSetSpec& s) {
        file_entry pipe;
        pipe.set_type(PIPE);
        pipe.set_id(6);
        s.files.push_back(pipe);
        s.fs[kTestPid].set_cwd_id(6);
      },
      fs_, "cwd");
}

TEST_F(HostileImageSet, FilesTableInconsistent) {
  expect_refused([](ImageSetSpec& s) { s.files.push_back(s.files[0]); }, "files.img", "duplicate file id");
  expect_refused([](ImageSetSpec& s) { s.files[2].mutable_reg()->set_id(1); }, "files.img", "reg payload");
}

TEST_F(HostileImageSet, SeccompFilterIndexOutOfRange) {
  expect_refused([](ImageSetSpec& s) { s.cores[kTestPid].mutable_thread_core()->set_seccomp_filter(1); }, "seccomp.img",
                 "filter");
  expect_refused([](ImageSetSpec& s) { s.seccomp->mutable_seccomp_filters(0)->set_prev(5); }, "seccomp.img", "filter");
  expect_refused([](ImageSetSpec& s) { s.seccomp.reset(); }, "seccomp.img", "filter");
}

TEST_F(HostileImageSet, InventoryOfAnotherVersion) {
  expect_refused([](ImageSetSpec& s) { s.inventory->set_img_version(1); }, "inventory.img", "version 1",
                 Errc::incompatible);
  expect_refused([](ImageSetSpec& s) { s.inventory->set_img_version(3); }, "inventory.img", "version 3",
                 Errc::incompatible);
}

}  // namespace
}  // namespace crshim

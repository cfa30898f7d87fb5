#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "checkpoint/image/image.h"
#include "checkpoint/mem/compress.h"
#include "tests/unit/temp_dir.h"

namespace crshim::mem {
namespace {

using test::TempDir;

// Three pages of text and one of bytes no compressor shrinks, written in pieces of odd sizes.
std::string sample() {
  std::string s;
  while (s.size() < 3 * 4096) s += "crshim pages ";
  s.resize(3 * 4096);
  for (int i = 0; i < 4096; i++) s.push_back(char((i * 2654435761u) >> 13));
  return s;
}

void write_compressed(const TempDir& dir, const std::string& name, const std::string& data) {
  auto w = image::Writer::create_raw(dir.fd(), name);
  ASSERT_TRUE(w.has_value()) << w.error().render();
  auto c = PagesCompressor::create();
  ASSERT_TRUE(c.has_value()) << c.error().render();
  for (size_t at = 0; at < data.size(); at += 1000)
    ASSERT_TRUE(c->write(*w, data.data() + at, std::min<size_t>(1000, data.size() - at)));
  ASSERT_TRUE(c->finish(*w));
  ASSERT_TRUE(w->close());
}

TEST(Compress, RoundTripsAndShrinks) {
  TempDir dir;
  std::string data = sample();
  write_compressed(dir, "pages-1.img", data);
  auto compressed = is_compressed(dir.fd(), "pages-1.img");
  ASSERT_TRUE(compressed.has_value());
  EXPECT_TRUE(*compressed);
  EXPECT_LT(std::filesystem::file_size(dir.file("pages-1.img")), data.size() / 2);
  auto img = PagesImage::open(dir.fd(), "pages-1.img");
  ASSERT_TRUE(img.has_value()) << img.error().render();
  ASSERT_EQ(img->size(), data.size());
  EXPECT_EQ(std::string(img->data(), img->size()), data);
}

TEST(Compress, PlainImagesAreMappedAsTheyAre) {
  TempDir dir;
  std::string data = sample();
  auto w = image::Writer::create_raw(dir.fd(), "pages-2.img");
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->write_raw(data));
  ASSERT_TRUE(w->close());
  EXPECT_FALSE(*is_compressed(dir.fd(), "pages-2.img"));
  auto img = PagesImage::open(dir.fd(), "pages-2.img");
  ASSERT_TRUE(img.has_value());
  EXPECT_EQ(std::string(img->data(), img->size()), data);
}

TEST(Compress, TruncatedOrDamagedStreamsAreCorruptImages) {
  TempDir dir;
  write_compressed(dir, "pages-3.img", sample());
  auto size = std::filesystem::file_size(dir.file("pages-3.img"));
  ASSERT_EQ(::truncate(dir.file("pages-3.img").c_str(), off_t(size - 7)), 0);
  auto cut = PagesImage::open(dir.fd(), "pages-3.img");
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().code, Errc::corrupt_image);
  EXPECT_NE(cut.error().render().find("decompress pages-3.img"), std::string::npos) << cut.error().render();

  write_compressed(dir, "pages-4.img", sample());
  {
    auto w = image::Writer::create_raw(dir.fd(), "pages-4.img");  // the magic, then garbage
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->write_raw(std::string("\x28\xb5\x2f\xfd", 4) + std::string(64, '\x7f')));
    ASSERT_TRUE(w->close());
  }
  auto bad = PagesImage::open(dir.fd(), "pages-4.img");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::corrupt_image);
}

}  // namespace
}  // namespace crshim::mem

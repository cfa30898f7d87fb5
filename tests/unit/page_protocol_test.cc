// CRIU's page-server protocol: header layout and encodings, and a dump streamed through a socket pair
// into a page server that writes the same images a local dump would.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/page_protocol.h"
#include "checkpoint/mem/page_server.h"
#include "pagemap.pb.h"

#include "tests/unit/temp_dir.h"

namespace crshim::mem {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

TEST(PageProtocol, HeaderIsCriusLittleEndianLayout) {
  ps::Iov iov;
  iov.cmd = ps::encode_cmd(ps::kAddF, ps::kPePresent);
  iov.nr_pages = 3;
  iov.vaddr = 0x7f0000001000;
  iov.dst_id = ps::encode_dst(ps::Target::process, 42);
  unsigned char raw[ps::kIovSize];
  ps::encode(iov, raw);
  const unsigned char want[24] = {0x06, 0x00, 0x04, 0x00,                          // cmd: ADD_F | PRESENT << 16
                                  0x03, 0x00, 0x00, 0x00,                          // nr_pages
                                  0x00, 0x10, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00,  // vaddr
                                  0x01, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};  // 42 << 8 | PID
  EXPECT_EQ(0, memcmp(raw, want, sizeof want));
  ps::Iov back = ps::decode(raw);
  EXPECT_EQ(ps::cmd_of(back.cmd), ps::kAddF);
  EXPECT_EQ(ps::flags_of(back.cmd), ps::kPePresent);
  EXPECT_EQ(back.nr_pages, 3u);
  EXPECT_EQ(back.vaddr, 0x7f0000001000u);
}

TEST(PageProtocol, CommandNumbersMatchCriu) {
  EXPECT_EQ(ps::kAdd, 1u);
  EXPECT_EQ(ps::kHole, 2u);
  EXPECT_EQ(ps::kOpen, 3u);
  EXPECT_EQ(ps::kOpen2, 4u);
  EXPECT_EQ(ps::kParent, 5u);
  EXPECT_EQ(ps::kAddF, 6u);
  EXPECT_EQ(ps::kGet, 7u);
  EXPECT_EQ(ps::kClose, 0x1023u);
  EXPECT_EQ(ps::kForceClose, 0x1024u);
  EXPECT_EQ(ps::encode_cmd(ps::kAddF, ps::kPeParent), 0x10006u);
}

TEST(PageProtocol, DstIdsDecodeIncludingOlderCriuTypes) {
  EXPECT_EQ(ps::encode_dst(ps::Target::shmem, 0x1234), 0x123402u);
  auto d = ps::decode_dst(ps::encode_dst(ps::Target::shmem, 99));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->target, ps::Target::shmem);
  EXPECT_EQ(d->id, 99u);
  for (uint64_t legacy : {10, 11, 16, 17}) {
    auto l = ps::decode_dst(77ull << 8 | legacy);
    ASSERT_TRUE(l) << legacy;
    EXPECT_EQ(*l, (ps::Dst{ps::Target::process, 77}));
  }
  for (uint64_t legacy : {27, 28, 29, 32, 33, 34}) EXPECT_EQ(ps::decode_dst(5ull << 8 | legacy)->target, ps::Target::shmem);
  EXPECT_FALSE(ps::decode_dst(5ull << 8 | 3));
  EXPECT_FALSE(ps::decode_dst(0));
}

std::vector<pagemap_entry> read_pagemap(int dir, const std::string& name, uint32_t& pages_id) {
  std::vector<pagemap_entry> out;
  auto r = image::Reader::open(dir, name, image::kind(image::Type::pagemap));
  EXPECT_TRUE(r) << (r ? "" : r.error().render());
  if (!r) return out;
  pagemap_head head;
  EXPECT_TRUE(*r->read(head));
  pages_id = head.pages_id();
  for (;;) {
    pagemap_entry pe;
    auto got = r->read(pe);
    if (!got || !*got) break;
    out.push_back(pe);
  }
  return out;
}

TEST(PageServer, StreamedDumpLandsAsLocalImages) {
  TempDir dir;
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  Logger log(0);
  Status served;
  std::thread server([&] { served = PageServer::serve(sv[1], dir.fd(), log, "test", true); });
  {
    auto client = PageServerClient::adopt(UniqueFd(sv[0]));
    auto parent = client->open(PageSink::Owner::process, 42);
    ASSERT_TRUE(parent) << parent.error().render();
    EXPECT_FALSE(*parent);  // no parent images there
    std::string data(3 * kPageSize, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = char('a' + i / kPageSize);
    // Two adjacent runs (merged by the server) and one apart.
    std::vector<PageEntry> entries{{0x10000, 1, ps::kPePresent}, {0x11000, 1, ps::kPePresent}, {0x20000, 1, ps::kPePresent}};
    ASSERT_TRUE(client->write(entries, data.data()));
    ASSERT_TRUE(client->close());
    EXPECT_EQ(client->coverage().at(42).size(), 2u);
    Status fin = client->finish();
    ASSERT_TRUE(fin) << fin.error().render();
    // ps_socket-style client: FORCE_CLOSE; the server must not wait for EOF then, but closing is fine.
  }
  server.join();
  ::close(sv[1]);
  ASSERT_TRUE(served) << served.error().render();
  uint32_t pages_id = 0;
  auto pm = read_pagemap(dir.fd(), image::pagemap_file(42), pages_id);
  ASSERT_EQ(pm.size(), 2u);
  EXPECT_EQ(pm[0].vaddr(), 0x10000u);
  EXPECT_EQ(pm[0].nr_pages(), 2u);
  EXPECT_EQ(pm[0].flags(), ps::kPePresent);
  EXPECT_EQ(pm[1].vaddr(), 0x20000u);
  EXPECT_EQ(pages_id, ps::kServerPagesIdBase);
  std::string pages = *sys::read_file(dir.path() + "/" + image::pages_file(pages_id));
  ASSERT_EQ(pages.size(), 3 * kPageSize);
  EXPECT_EQ(pages[0], 'a');
  EXPECT_EQ(pages[kPageSize], 'b');
  EXPECT_EQ(pages[2 * kPageSize + 7], 'c');
}

TEST(PageServer, CutStreamFailsAndRemovesPartialImages) {
  TempDir dir;
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  Logger log(0);
  Status served;
  std::thread server([&] { served = PageServer::serve(sv[1], dir.fd(), log, "test", true); });
  {
    auto client = PageServerClient::adopt(UniqueFd(sv[0]));
    ASSERT_TRUE(client->open(PageSink::Owner::process, 7));
    std::string data(kPageSize, 'x');
    ASSERT_TRUE(client->write({{0x1000, 1, ps::kPePresent}}, data.data()));
    // Gone without the final request: a dumper that failed.
  }
  server.join();
  ::close(sv[1]);
  ASSERT_FALSE(served);
  EXPECT_NE(served.error().render().find("before the dump was complete"), std::string::npos) << served.error().render();
  EXPECT_NE(served.error().render().find(
                "; hint: the dump failed on the other side; its log says why; the images written here were removed"),
            std::string::npos)
      << served.error().render();
  EXPECT_FALSE(dir.has(image::pagemap_file(7)));
  EXPECT_FALSE(dir.has(image::pages_file(ps::kServerPagesIdBase)));
}

TEST(PageServer, AFailedCloseSendsTheUserToTheServersLog) {
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  // A server that answers the final CLOSE with a failure status.
  std::thread server([&] {
    ps::Iov req{};
    while (::recv(sv[1], &req, sizeof req, MSG_WAITALL) == ssize_t(sizeof req))
      if (ps::cmd_of(req.cmd) == ps::kClose || ps::cmd_of(req.cmd) == ps::kForceClose) {
        int32_t status = 5;
        EXPECT_EQ(ssize_t(sizeof status), ::send(sv[1], &status, sizeof status, MSG_NOSIGNAL));
        break;
      }
  });
  auto client = PageServerClient::adopt(UniqueFd(sv[0]));
  Status st = client->finish();
  server.join();
  ::close(sv[1]);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("it answered status 5; hint: see the page server's log"), std::string::npos)
      << st.error().render();
}

TEST(PageServer, MalformedRequestsAreRefused) {
  auto run = [](const std::vector<ps::Iov>& reqs, bool expect_parent_byte) {
    TempDir dir;
    int sv[2];
    EXPECT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    Logger log(0);
    Status served;
    std::thread server([&] { served = PageServer::serve(sv[1], dir.fd(), log, "test", true); });
    for (const auto& r : reqs) {
      EXPECT_EQ(ssize_t(sizeof r), ::send(sv[0], &r, sizeof r, MSG_NOSIGNAL));
      if (ps::cmd_of(r.cmd) == ps::kOpen2 && expect_parent_byte) {
        char c;
        EXPECT_EQ(1, ::recv(sv[0], &c, 1, 0));
      }
    }
    ::shutdown(sv[0], SHUT_WR);
    server.join();
    ::close(sv[0]);
    ::close(sv[1]);
    EXPECT_FALSE(dir.has(image::pagemap_file(5)));
    return served ? std::string() : served.error().render();
  };
  ps::Iov open{ps::kOpen2, 0, 0, ps::encode_dst(ps::Target::process, 5)};
  std::string unknown = run({{0x77, 0, 0, 0}}, false);
  EXPECT_NE(unknown.find("unknown command"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("; hint: the dumper speaks another protocol, or the stream is damaged"), std::string::npos)
      << unknown;
  EXPECT_NE(run({{ps::kOpen2, 0, 0, 5ull << 8 | 3}}, false).find("unknown pagemap type"), std::string::npos);
  EXPECT_NE(run({open, {ps::encode_cmd(ps::kAddF, ps::kPePresent), 1, 0x1000, ps::encode_dst(ps::Target::process, 6)}}, true)
                .find("not open"),
            std::string::npos);
  std::string no_parent = run({open, {ps::encode_cmd(ps::kAddF, ps::kPeParent), 1, 0x1000, open.dst_id}}, true);
  EXPECT_NE(no_parent.find("has none here"), std::string::npos) << no_parent;
  EXPECT_NE(no_parent.find("; hint: start the page server with --prev-images-dir naming the previous dump's directory"),
            std::string::npos)
      << no_parent;
  EXPECT_NE(run({open, {ps::encode_cmd(ps::kAddF, ps::kPePresent), 1, 0x1001, open.dst_id}}, true).find("bad entry"),
            std::string::npos);
}

}  // namespace
}  // namespace crshim::mem

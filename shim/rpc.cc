#include "shim/rpc.h"

#include "shim/requests.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>

#include "checkpoint/engine.h"
#include "checkpoint/dump/incremental.h"
#include "checkpoint/kernel/features.h"
#include "checkpoint/mem/page_server.h"
#include "hooks/hook_chain.h"
#include "hooks/rpc_io.h"
#include "hooks/rpc_notify.h"
#include "hooks/script_hooks.h"
#include "hooks/status_fd.h"
#include "checkpoint/base/sys.h"
#include "shim/job.h"

namespace crshim::rpc {

namespace {

void set_failure(criu_resp& resp, const Error& e, int cr_errno) {
  resp.set_success(false);
  if (cr_errno != 0) resp.set_cr_errno(cr_errno);
  resp.set_cr_errmsg(cap_errmsg(e.render()));
}

// Engine errors carry errno only when a syscall failed; that is the one sent as cr_errno.
void set_failure(criu_resp& resp, const Error& e) { set_failure(resp, e, e.err); }

criu_resp version_answer() {
  criu_resp resp;
  resp.set_type(::VERSION);
  resp.set_success(true);
  criu_version* v = resp.mutable_version();
  v->set_major_number(kVersionMajor);
  v->set_minor_number(kVersionMinor);
  // No gitid: go-criu and libcriu would round the version up to the next minor for it.
  v->set_name(std::string("crshim ") + CRSHIM_VERSION);
  return resp;
}

criu_resp feature_check_answer(const criu_req& req) {
  criu_resp resp;
  resp.set_type(::FEATURE_CHECK);
  if (!req.has_features()) {
    set_failure(resp, make_error(Errc::invalid_argument, "FEATURE_CHECK", "criu_req", "no features to check were given"),
                kBadRequestErrno);
    return resp;
  }
  const criu_features& want = req.features();
  bool ask_pidfd = want.has_pidfd_store() && want.pidfd_store(), ask_mem = want.has_mem_track() && want.mem_track(),
       ask_lazy = want.has_lazy_pages() && want.lazy_pages();
  // Truthful: each feature asked for is what this kernel offers (pre-dumps track written pages with
  // an asynchronous write-protect userfaultfd and PAGEMAP_SCAN, no soft-dirty needed). A probe that
  // fails is an error only when pidfd_store was asked for; the others then read false.
  auto f = ask_pidfd || ask_mem || ask_lazy ? kernel::probe_features() : Result<kernel::Features>(kernel::Features{});
  if (!f && ask_pidfd) {
    set_failure(resp, f.error());
    return resp;
  }
  resp.set_success(true);
  criu_features* have = resp.mutable_features();
  have->set_mem_track(ask_mem && f && f->write_tracking());
  have->set_lazy_pages(ask_lazy && f && f->lazy_restore());
  have->set_pidfd_store(ask_pidfd && f->pidfd_store());
  return resp;
}

criu_resp check_answer() {
  criu_resp resp;
  resp.set_type(::CHECK);
  auto f = kernel::probe_features();
  if (!f) {
    set_failure(resp, f.error());
    return resp;
  }
  if (f->usable()) {
    resp.set_success(true);
    return resp;
  }
  std::string missing;
  for (auto line : sys::split(f->missing_text(), '\n'))
    if (line.starts_with("required")) missing += (missing.empty() ? "" : "; ") + std::string(line);
  set_failure(resp, make_error(Errc::unsupported, "check", "kernel", missing), 0);
  return resp;
}

criu_resp unsupported_answer(const criu_req& req) {
  criu_resp resp;
  // CRIU answers PAGE_SERVER_CHLD with PAGE_SERVER; every other known type is echoed.
  resp.set_type(req.type() == ::PAGE_SERVER_CHLD ? ::PAGE_SERVER : req.type());
  Error e = make_error(Errc::unsupported, criu_req_type_Name(req.type()), "", "this request type is not supported by crshim");
  e.err = EOPNOTSUPP;
  set_failure(resp, e);
  return resp;
}

criu_resp unknown_answer(const std::string& what) {
  criu_resp resp;
  resp.set_type(::EMPTY);
  set_failure(resp, make_error(Errc::invalid_argument, "RPC request", "", what), 0);
  return resp;
}

// DUMP and RESTORE: map the options, open the job, run the engine with the notify/script chain.
criu_resp job_answer(const criu_req& req, int sock, const ServeConfig& cfg, const Peer& peer) {
  const bool is_dump = req.type() != ::RESTORE;  // DUMP, PRE_DUMP, SINGLE_PRE_DUMP
  criu_resp resp;
  resp.set_type(req.type());
  resp.set_success(false);
  if (!is_dump) resp.mutable_restore()->set_pid(-1);  // CRIU always carries restore{pid}; -1: none created

  auto mapped = map_request(req, cfg.base, peer, cfg.mode);
  if (!mapped) {
    set_failure(resp, mapped.error(), kBadRequestErrno);
    return resp;
  }
  auto ignored = check_engine_support(*mapped);
  if (!ignored) {
    set_failure(resp, ignored.error(), 0);
    return resp;
  }
  const Options& o = mapped->opts;
  auto opened = open_job(o, *o.log_file, is_dump);
  if (!opened) {
    set_failure(resp, opened.error());
    return resp;
  }
  Job& job = **opened;
  job.progress.reset();  // the client's terminal, if stderr is one, is not ours to draw on
  LOG_INFO(job.log, "RPC %s request from pid %d (%s mode)", criu_req_type_Name(req.type()).c_str(), peer.pid,
           cfg.mode == Mode::swrk ? "swrk" : "service");
  // Everything the client asked for, to see what a runtime sends (its log level is usually 4).
  LOG_DEBUG(job.log, "RPC request options: %s", req.opts().ShortDebugString().c_str());
  for (const auto& note : *ignored) LOG_WARN(job.log, "RPC option ignored: %s", note.c_str());
  for (const auto& f : o.config_files_read) LOG_INFO(job.log, "Config file applied: %s", f.c_str());

  auto fail_job = [&](const Error& e) {
    job.log.log_error(__FILE__, __LINE__, e);
    LOG_ERROR(job.log, "%s failed", is_dump ? "Dumping" : "Restoring");
    set_failure(resp, e);
    return resp;
  };
  UniqueFd status_fd;
  if (mapped->status_fd_path) {
    auto fd = sys::open(*mapped->status_fd_path, O_WRONLY);
    if (!fd) return fail_job(fd.error().within("status_fd"));
    status_fd = std::move(*fd);
  }

  ScriptHooks scripts(o.action_scripts, image_dir_env(job.images_dir.get()), job.log);
  RpcNotifyHooks notify(sock, job.log);
  StatusFdHooks status(std::move(status_fd));
  HookChain hooks;
  if (mapped->notify_scripts) hooks.add(notify);
  hooks.add(scripts);
  hooks.add(status);
  Session session = job.session();

  if (is_dump) {
    DumpRequest dr = dump_request(o);
    dr.hangup_fd = sock;
    scripts.set_init_pid(dr.pid);
    auto res = dump(dr, session, hooks);
    if (!res) return fail_job(res.error());
    if (o.display_stats)
      LOG_MSG(job.log, "Frozen time: %llu us, pages written: %llu", (unsigned long long)res->frozen_us,
              (unsigned long long)res->pages_written);
    resp.set_success(true);
    if (!dr.pre_dump) resp.mutable_dump()->set_restored(false);
    return resp;
  }

  RestoreRequest rr = restore_request(o);
  rr.detached = true;  // the RESTORE answer cannot wait for the tree to exit
  auto res = restore(rr, session, hooks);
  if (!res) return fail_job(res.error());
  if (o.display_stats) LOG_MSG(job.log, "Restore time: %llu us", (unsigned long long)res->total_us);
  resp.set_success(true);
  resp.mutable_restore()->set_pid(res->root_pid);
  return resp;
}

// PAGE_SERVER (daemonised) and PAGE_SERVER_CHLD: a page server in a child of this process; it listens
// (opts.ps address/port, port 0 picks one) before the answer, so the client may connect at once. CRIU
// answers both with type PAGE_SERVER and ps{pid, port}.
criu_resp page_server_answer(const criu_req& req, int sock, const ServeConfig& cfg, const Peer& peer) {
  criu_resp resp;
  resp.set_type(::PAGE_SERVER);
  resp.set_success(false);
  auto mapped = map_request(req, cfg.base, peer, cfg.mode);
  if (!mapped) {
    set_failure(resp, mapped.error(), kBadRequestErrno);
    return resp;
  }
  const Options& o = mapped->opts;
  if (o.tls || o.lazy_pages) {
    set_failure(resp, make_error(Errc::unsupported, "PAGE_SERVER", "", "tls and lazy_pages are not supported"), 0);
    return resp;
  }
  auto opened = open_job(o, o.log_file.value_or("page-server.log"), true);
  if (!opened) {
    set_failure(resp, opened.error());
    return resp;
  }
  Job& job = **opened;
  job.progress.reset();
  if (o.prev_images_dir) {
    auto parent = dumper::ParentImages::link(job.images_dir.get(), *o.prev_images_dir);
    if (!parent) {
      set_failure(resp, parent.error());
      return resp;
    }
  }
  std::optional<mem::PageServer> server;
  if (!o.ps_socket) {
    auto listening = mem::PageServer::listen(o.address.value_or(""), o.port.value_or(0));
    if (!listening) {
      job.log.log_error(__FILE__, __LINE__, listening.error());
      set_failure(resp, listening.error());
      return resp;
    }
    server.emplace(std::move(*listening));
  }
  pid_t child = ::fork();
  if (child < 0) {
    set_failure(resp, sys_error("fork", "page server"));
    return resp;
  }
  if (child == 0) {
    ::close(sock);  // the client talks to the parent only
    if (req.type() == ::PAGE_SERVER) ::setsid();
    Status st = server ? server->serve_one(job.images_dir.get(), job.log)
                       : mem::PageServer::serve(*o.ps_socket, job.images_dir.get(), job.log, "ps.fd", false);
    if (!st) job.log.log_error(__FILE__, __LINE__, st.error());
    ::_exit(st ? 0 : 1);
  }
  LOG_INFO(job.log, "Page server %d listening on port %u", child, unsigned(server ? server->port() : 0));
  resp.set_success(true);
  resp.mutable_ps()->set_pid(child);
  resp.mutable_ps()->set_port(server ? server->port() : 0);
  return resp;
}

criu_resp answer(const criu_req& req, int sock, const ServeConfig& cfg, const Peer& peer) {
  switch (req.type()) {
    case ::VERSION: return version_answer();
    case ::FEATURE_CHECK: return feature_check_answer(req);
    case ::CHECK: return check_answer();
    case ::DUMP:
    case ::PRE_DUMP:
    case ::SINGLE_PRE_DUMP:
    case ::RESTORE: return job_answer(req, sock, cfg, peer);
    case ::PAGE_SERVER:
    case ::PAGE_SERVER_CHLD: return page_server_answer(req, sock, cfg, peer);
    case ::CPUINFO_DUMP:
    case ::CPUINFO_CHECK:
    case ::WAIT_PID: return unsupported_answer(req);
    case ::EMPTY:
    case ::NOTIFY: break;
  }
  return unknown_answer(std::string("unexpected request type ") + criu_req_type_Name(req.type()));
}

// The types after which CRIU reads another request on the same socket when keep_open is set.
bool keeps_open(criu_req_type t) {
  return t == ::VERSION || t == ::FEATURE_CHECK || t == ::PAGE_SERVER || t == ::PAGE_SERVER_CHLD;
}
// After a PRE_DUMP, CRIU always waits for the next one (or the final DUMP) on the same socket.
bool continues_series(criu_req_type t) { return t == ::PRE_DUMP; }

}  // namespace

Result<Peer> peer_credentials(int sock) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return fail(sys_error("getsockopt(SO_PEERCRED)", "RPC socket"));
  return Peer{cred.pid, cred.uid, cred.gid};
}

namespace {

// Whether `peer` has group `gid`, as its primary group or in its supplementary list (/proc/PID/status).
bool in_group(const Peer& peer, std::optional<gid_t> gid) {
  if (!gid) return false;
  if (peer.gid == *gid) return true;
  auto status = sys::read_file("/proc/" + std::to_string(peer.pid) + "/status");
  if (!status) return false;
  for (auto line : sys::split(*status, '\n')) {
    if (!line.starts_with("Groups:")) continue;
    for (auto g : sys::split(line.substr(7), ' ')) {
      uint64_t v;
      auto t = sys::trim(g);
      if (!t.empty() && sys::parse_u64(t, v) && v == *gid) return true;
    }
  }
  return false;
}

}  // namespace

std::string cap_errmsg(std::string msg) {
  if (msg.size() <= kMaxErrmsg) return msg;
  size_t n = kMaxErrmsg;
  // msg[n] is the first byte dropped; if it continues a sequence, cut before that sequence's lead byte.
  while (n > 0 && (static_cast<unsigned char>(msg[n]) & 0xC0) == 0x80) --n;
  msg.resize(n);
  return msg;
}

int serve(int sock, const ServeConfig& cfg) {
  auto peer = peer_credentials(sock);
  bool last_ok = false;
  for (bool first = true;; first = false) {
    auto dgram = rpcio::recv_datagram(sock);
    if (!dgram) {
      fprintf(stderr, "crshim: %s\n", dgram.error().render().c_str());
      return 1;
    }
    // A hang-up between requests ends the session; before any request it is the client's failure.
    if (!*dgram) return !first && last_ok ? 0 : 1;

    criu_req req;
    criu_resp resp;
    bool keep_open = false;
    if (!req.ParseFromString(**dgram)) {
      resp = unknown_answer("malformed request (unknown type or missing required fields)");
    } else if (!peer) {
      resp.set_type(req.type());
      set_failure(resp, peer.error());
    } else if (cfg.require_root && peer->uid != 0 && !in_group(*peer, cfg.allowed_group)) {
      resp.set_type(req.type());
      set_failure(resp,
                  make_error(Errc::invalid_argument, "RPC request", "uid " + std::to_string(peer->uid),
                             cfg.allowed_group ? "only root and members of group " + std::to_string(*cfg.allowed_group) +
                                                     " may use the crshim service"
                                               : "only root may use the crshim service")
                      .with_hint("start the service with --allow-group GROUP to let a group in"),
                  EPERM);
    } else {
      resp = answer(req, sock, cfg, *peer);
      keep_open = resp.success() && ((req.keep_open() && keeps_open(req.type())) || continues_series(req.type()));
    }
    if (Status st = rpcio::send_message(sock, resp); !st) {
      fprintf(stderr, "crshim: %s\n", st.error().render().c_str());
      return 1;
    }
    last_ok = resp.success();
    if (!keep_open) return last_ok ? 0 : 1;
  }
}

}  // namespace crshim::rpc

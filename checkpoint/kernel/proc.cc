#include "checkpoint/kernel/proc.h"

#include <signal.h>

#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <cerrno>
#include <limits>
#include <memory>
#include <type_traits>

#include "checkpoint/base/sys.h"

namespace crshim::proc {
namespace {

// Quoted input in messages is cut here so a garbage line cannot blow up a log line.
constexpr size_t kQuoteMax = 120;

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, kQuoteMax)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > kQuoteMax) out += "...";
  out += '"';
  return out;
}

std::string line_object(std::string_view source, size_t line_no) {
  return std::string(source) + " line " + std::to_string(line_no);
}

Error parse_error(std::string object, std::string message) {
  return make_error(Errc::unsupported, "parse", std::move(object), std::move(message));
}

Error line_error(std::string_view source, size_t line_no, std::string message) {
  return parse_error(line_object(source, line_no), std::move(message));
}

// Lines without their '\n'; a final line without newline counts, a trailing empty piece does not.
std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view skip_spaces(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

// Next whitespace-separated token; advances `s` past it.
std::string_view next_token(std::string_view& s) {
  s = skip_spaces(s);
  size_t n = 0;
  while (n < s.size() && !is_space(s[n])) ++n;
  auto tok = s.substr(0, n);
  s.remove_prefix(n);
  return tok;
}

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    auto t = next_token(s);
    if (t.empty()) break;
    out.push_back(t);
  }
  return out;
}

// Strict whole-string integer parse into T with range check.
template <class T>
bool to_num(std::string_view s, T& out, int base = 10) {
  if constexpr (std::is_same_v<T, bool>) {
    uint64_t v;
    if (!sys::parse_u64(s, v, base) || v > 1) return false;
    out = v != 0;
    return true;
  } else if constexpr (std::is_unsigned_v<T>) {
    uint64_t v;
    if (s.empty() || s[0] == '-' || s[0] == '+') return false;
    if (!sys::parse_u64(s, v, base) || v > std::numeric_limits<T>::max()) return false;
    out = T(v);
    return true;
  } else {
    int64_t v;
    if (s.empty() || s[0] == '+') return false;
    if (!sys::parse_i64(s, v, base) || v < std::numeric_limits<T>::min() ||
        v > std::numeric_limits<T>::max())
      return false;
    out = T(v);
    return true;
  }
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Splits "key:value" at the first ':'; false when there is none.
bool split_key(std::string_view line, std::string_view& key, std::string_view& value) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  key = line.substr(0, colon);
  value = line.substr(colon + 1);
  return true;
}

// "a:1 b: 2 c:3" style fields (fdinfo extras): "key:value" or "key:" followed by the value token.
bool key_values(std::string_view s, std::vector<std::pair<std::string_view, std::string_view>>& out) {
  for (;;) {
    auto tok = next_token(s);
    if (tok.empty()) return true;
    size_t colon = tok.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    auto key = tok.substr(0, colon);
    auto value = tok.substr(colon + 1);
    if (value.empty()) {
      value = next_token(s);
      if (value.empty()) return false;
    }
    out.emplace_back(key, value);
  }
}

std::optional<std::string_view> find_value(
    const std::vector<std::pair<std::string_view, std::string_view>>& kv, std::string_view key) {
  for (auto& [k, v] : kv)
    if (k == key) return v;
  return std::nullopt;
}

// maps/smaps paths: the kernel escapes only '\n' (as \012).
std::string decode_path(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, 4) == "\\012") {
      out += '\n';
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

constexpr std::string_view kDeleted = " (deleted)";

}  // namespace

// ---- maps ----------------------------------------------------------------------------------------

std::optional<std::string_view> Vma::anon_name() const {
  std::string_view p = path;
  if (!starts_with(p, "[anon:") || !ends_with(p, "]")) return std::nullopt;
  return p.substr(6, p.size() - 7);
}

Result<Vma> parse_maps_line(std::string_view line, std::string_view object) {
  auto bad = [&](const std::string& what) {
    return fail(parse_error(std::string(object), what + " in " + quote(line)));
  };
  Vma v;
  std::string_view rest = line;
  auto range = next_token(rest);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos || !to_num(range.substr(0, dash), v.start, 16) ||
      !to_num(range.substr(dash + 1), v.end, 16))
    return bad("bad address range");
  if (v.start >= v.end) return bad("empty or reversed address range");

  auto perms = next_token(rest);
  if (perms.size() != 4) return bad("bad permissions");
  if (perms[0] == 'r') v.prot |= PROT_READ; else if (perms[0] != '-') return bad("bad permissions");
  if (perms[1] == 'w') v.prot |= PROT_WRITE; else if (perms[1] != '-') return bad("bad permissions");
  if (perms[2] == 'x') v.prot |= PROT_EXEC; else if (perms[2] != '-') return bad("bad permissions");
  if (perms[3] == 's') v.shared = true; else if (perms[3] != 'p') return bad("bad permissions");

  if (!to_num(next_token(rest), v.pgoff, 16)) return bad("bad offset");

  auto dev = next_token(rest);
  size_t colon = dev.find(':');
  if (colon == std::string_view::npos || !to_num(dev.substr(0, colon), v.dev_major, 16) ||
      !to_num(dev.substr(colon + 1), v.dev_minor, 16))
    return bad("bad device");

  if (!to_num(next_token(rest), v.inode, 10)) return bad("bad inode");

  // The path is everything after the padding; it may itself contain spaces.
  std::string_view path = skip_spaces(rest);
  if (ends_with(path, kDeleted)) {
    v.deleted = true;
    path.remove_suffix(kDeleted.size());
  }
  v.path = decode_path(path);
  return v;
}

Result<std::vector<Vma>> parse_maps(std::string_view text, std::string_view source) {
  std::vector<Vma> out;
  auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    auto vma = CR_TRY(parse_maps_line(lines[i], line_object(source, i + 1)));
    if (!out.empty() && vma.start < out.back().end)
      return fail(line_error(source, i + 1, "VMA overlaps or is out of order with the previous one"));
    out.push_back(std::move(vma));
  }
  return out;
}

// ---- smaps ---------------------------------------------------------------------------------------

namespace {
constexpr const char* kVmFlagNames[] = {
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lf", "dw", "lo", "io", "sr", "rr", "dc",
    "de", "ac", "nr", "ht", "sf", "nl", "ar", "wf", "dd", "sd", "mm", "hg", "nh", "mg", "um", "uw", "ui",
    "ss", "bt", "sl", "mt"};
static_assert(std::size(kVmFlagNames) == size_t(VmFlag::count_));
static_assert(size_t(VmFlag::count_) <= 64);

constexpr MadviseFlag kMadviseFlags[] = {
    {VmFlag::hg, MADV_HUGEPAGE, "MADV_HUGEPAGE"},
    {VmFlag::nh, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"},
    {VmFlag::dd, MADV_DONTDUMP, "MADV_DONTDUMP"},
    {VmFlag::dc, MADV_DONTFORK, "MADV_DONTFORK"},
    {VmFlag::wf, MADV_WIPEONFORK, "MADV_WIPEONFORK"},
    {VmFlag::mg, MADV_MERGEABLE, "MADV_MERGEABLE"},
};

bool is_maps_header(std::string_view line) {
  auto first = next_token(line);
  return !first.empty() && first.back() != ':' && first.find('-') != std::string_view::npos;
}
}  // namespace

const char* vm_flag_name(VmFlag f) {
  return size_t(f) < size_t(VmFlag::count_) ? kVmFlagNames[size_t(f)] : "??";
}

std::optional<VmFlag> vm_flag_from_name(std::string_view code) {
  for (size_t i = 0; i < size_t(VmFlag::count_); ++i)
    if (code == kVmFlagNames[i]) return VmFlag(i);
  return std::nullopt;
}

Result<uint64_t> parse_vm_flags(std::string_view value, std::string_view object,
                                std::vector<std::string>* unknown) {
  uint64_t bits = 0;
  for (auto code : tokens(value)) {
    if (code.size() != 2 || !std::isalnum(static_cast<unsigned char>(code[0])) ||
        !std::isalnum(static_cast<unsigned char>(code[1])))
      return fail(parse_error(std::string(object), "bad VmFlags code " + quote(code)));
    if (auto f = vm_flag_from_name(code))
      bits |= vm_bit(*f);
    else if (unknown)
      unknown->emplace_back(code);
  }
  return bits;
}

std::span<const MadviseFlag> madvise_flags() { return kMadviseFlags; }

std::vector<int> madvise_for(uint64_t vm_flags) {
  std::vector<int> out;
  for (const auto& m : kMadviseFlags)
    if (vm_flags & vm_bit(m.flag)) out.push_back(m.advice);
  return out;
}

Result<std::vector<SmapsEntry>> parse_smaps(std::string_view text, std::string_view source) {
  std::vector<SmapsEntry> out;
  bool have_flags = false;
  size_t header_line = 0;
  auto lines = lines_of(text);
  auto close_entry = [&]() -> Status {
    if (!out.empty() && !have_flags)
      return fail(line_error(source, header_line, "VMA has no VmFlags line"));
    return {};
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (is_maps_header(line)) {
      CR_OK(close_entry());
      SmapsEntry e;
      e.vma = CR_TRY(parse_maps_line(line, line_object(source, i + 1)));
      if (!out.empty() && e.vma.start < out.back().vma.end)
        return fail(line_error(source, i + 1, "VMA overlaps or is out of order with the previous one"));
      out.push_back(std::move(e));
      have_flags = false;
      header_line = i + 1;
      continue;
    }
    std::string_view key, value;
    if (!split_key(line, key, value) || key.empty())
      return fail(line_error(source, i + 1, "expected \"Key: value\" or a VMA header, got " + quote(line)));
    if (out.empty()) return fail(line_error(source, i + 1, "field before the first VMA header"));
    SmapsEntry& e = out.back();
    if (key == "VmFlags") {
      if (have_flags) return fail(line_error(source, i + 1, "second VmFlags line for one VMA"));
      e.vm_flags = CR_TRY(parse_vm_flags(value, line_object(source, i + 1), &e.unknown_flags));
      have_flags = true;
      continue;
    }
    uint64_t* dst = key == "Size" ? &e.size_kb
                    : key == "Rss" ? &e.rss_kb
                    : key == "Anonymous" ? &e.anonymous_kb
                    : key == "Swap" ? &e.swap_kb
                                    : nullptr;
    if (!dst) continue;  // other counters are not needed
    auto toks = tokens(value);
    if (toks.empty() || toks.size() > 2 || (toks.size() == 2 && toks[1] != "kB") || !to_num(toks[0], *dst))
      return fail(line_error(source, i + 1, "bad " + std::string(key) + " value " + quote(value)));
  }
  CR_OK(close_entry());
  return out;
}

// ---- stat ----------------------------------------------------------------------------------------

Result<Stat> parse_stat(std::string_view text, std::string_view source) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (text.empty()) return fail(parse_error(std::string(source), "empty file"));
  if (text.find('\n') != std::string_view::npos)
    return fail(parse_error(std::string(source), "more than one line"));
  Stat st;
  // comm may contain anything, including ") (": it ends at the LAST ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return fail(parse_error(std::string(source), "no (comm) in " + quote(text)));
  if (!to_num(sys::trim(text.substr(0, open)), st.pid))
    return fail(parse_error(std::string(source), "bad pid in " + quote(text)));
  st.comm = std::string(text.substr(open + 1, close - open - 1));

  auto f = tokens(text.substr(close + 1));
  constexpr size_t kFirst = 3, kLast = 52;
  if (f.size() < kLast - kFirst + 1)
    return fail(parse_error(std::string(source), "only " + std::to_string(f.size() + 2) +
                                                     " fields, need " + std::to_string(kLast)));
  if (f[0].size() != 1) return fail(parse_error(std::string(source), "bad state " + quote(f[0])));
  st.state = f[0][0];

  std::string bad;
  auto num = [&](size_t field, const char* name, auto& out) {
    if (!bad.empty()) return;
    if (!to_num(f[field - kFirst], out))
      bad = "field " + std::to_string(field) + " (" + name + ") is not a number: " + quote(f[field - kFirst]);
  };
  num(4, "ppid", st.ppid);
  num(5, "pgrp", st.pgrp);
  num(6, "session", st.session);
  num(7, "tty_nr", st.tty_nr);
  num(8, "tpgid", st.tpgid);
  num(9, "flags", st.flags);
  num(10, "minflt", st.minflt);
  num(11, "cminflt", st.cminflt);
  num(12, "majflt", st.majflt);
  num(13, "cmajflt", st.cmajflt);
  num(14, "utime", st.utime);
  num(15, "stime", st.stime);
  num(16, "cutime", st.cutime);
  num(17, "cstime", st.cstime);
  num(18, "priority", st.priority);
  num(19, "nice", st.nice);
  num(20, "num_threads", st.num_threads);
  num(21, "itrealvalue", st.itrealvalue);
  num(22, "starttime", st.starttime);
  num(23, "vsize", st.vsize);
  num(24, "rss", st.rss);
  num(25, "rsslim", st.rsslim);
  num(26, "startcode", st.start_code);
  num(27, "endcode", st.end_code);
  num(28, "startstack", st.start_stack);
  num(29, "kstkesp", st.kstkesp);
  num(30, "kstkeip", st.kstkeip);
  num(31, "signal", st.signal);
  num(32, "blocked", st.blocked);
  num(33, "sigignore", st.sigignore);
  num(34, "sigcatch", st.sigcatch);
  num(35, "wchan", st.wchan);
  num(36, "nswap", st.nswap);
  num(37, "cnswap", st.cnswap);
  num(38, "exit_signal", st.exit_signal);
  num(39, "processor", st.processor);
  num(40, "rt_priority", st.rt_priority);
  num(41, "policy", st.policy);
  num(42, "delayacct_blkio_ticks", st.delayacct_blkio_ticks);
  num(43, "guest_time", st.guest_time);
  num(44, "cguest_time", st.cguest_time);
  num(45, "start_data", st.start_data);
  num(46, "end_data", st.end_data);
  num(47, "start_brk", st.start_brk);
  num(48, "arg_start", st.arg_start);
  num(49, "arg_end", st.arg_end);
  num(50, "env_start", st.env_start);
  num(51, "env_end", st.env_end);
  num(52, "exit_code", st.exit_code);
  if (!bad.empty()) return fail(parse_error(std::string(source), bad));
  return st;
}

// ---- status --------------------------------------------------------------------------------------

namespace {
// Name: is printed with '\n' and '\\' escaped.
std::string decode_status_name(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char n = s[i + 1];
      if (n == 'n') { out += '\n'; ++i; continue; }
      if (n == 't') { out += '\t'; ++i; continue; }
      if (n == '\\') { out += '\\'; ++i; continue; }
    }
    out += s[i];
  }
  return out;
}

template <class T>
bool num_list(std::string_view s, std::vector<T>& out) {
  out.clear();
  for (auto t : tokens(s)) {
    T v;
    if (!to_num(t, v)) return false;
    out.push_back(v);
  }
  return true;
}
}  // namespace

Result<TaskStatus> parse_status(std::string_view text, std::string_view source) {
  TaskStatus st;
  enum : unsigned { kName = 1, kState = 2, kTgid = 4, kPid = 8, kPPid = 16, kUid = 32, kGid = 64 };
  unsigned seen = 0;
  auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view key, raw;
    if (!split_key(lines[i], key, raw) || key.empty())
      return fail(line_error(source, i + 1, "expected \"Key:\\tvalue\", got " + quote(lines[i])));
    std::string_view value = sys::trim(raw);
    bool ok = true;
    auto bad = [&](const char* what) {
      return fail(line_error(source, i + 1, std::string("bad ") + what + " value " + quote(value)));
    };
    auto four = [&](std::array<uint32_t, 4>& out) {
      std::vector<uint32_t> v;
      return num_list(value, v) && v.size() == 4 && (std::copy(v.begin(), v.end(), out.begin()), true);
    };
    if (key == "Name") {
      // Only the separator tab goes: a comm may end in spaces.
      if (!raw.empty() && raw.front() == '\t') raw.remove_prefix(1);
      st.name = decode_status_name(raw);
      seen |= kName;
    } else if (key == "Umask") {
      uint32_t m;
      ok = to_num(value, m, 8);
      if (ok) st.umask = m;
    } else if (key == "State") {
      ok = !value.empty() && (value.size() == 1 || value[1] == ' ');
      if (ok) st.state = value[0];
      seen |= kState;
    } else if (key == "Tgid") {
      ok = to_num(value, st.tgid);
      seen |= kTgid;
    } else if (key == "Ngid") {
      ok = to_num(value, st.ngid);
    } else if (key == "Pid") {
      ok = to_num(value, st.pid);
      seen |= kPid;
    } else if (key == "PPid") {
      ok = to_num(value, st.ppid);
      seen |= kPPid;
    } else if (key == "TracerPid") {
      ok = to_num(value, st.tracer_pid);
    } else if (key == "Uid") {
      ok = four(st.uid);
      seen |= kUid;
    } else if (key == "Gid") {
      ok = four(st.gid);
      seen |= kGid;
    } else if (key == "FDSize") {
      ok = to_num(value, st.fdsize);
    } else if (key == "Groups") {
      ok = num_list(value, st.groups);
    } else if (key == "NStgid") {
      ok = num_list(value, st.nstgid);
    } else if (key == "NSpid") {
      ok = num_list(value, st.nspid);
    } else if (key == "NSpgid") {
      ok = num_list(value, st.nspgid);
    } else if (key == "NSsid") {
      ok = num_list(value, st.nssid);
    } else if (key == "Threads") {
      ok = to_num(value, st.threads);
    } else if (key == "SigQ") {
      size_t slash = value.find('/');
      ok = slash != std::string_view::npos && to_num(value.substr(0, slash), st.sigq_queued) &&
           to_num(value.substr(slash + 1), st.sigq_limit);
    } else if (key == "SigPnd") {
      ok = to_num(value, st.sigpnd, 16);
    } else if (key == "ShdPnd") {
      ok = to_num(value, st.shdpnd, 16);
    } else if (key == "SigBlk") {
      ok = to_num(value, st.sigblk, 16);
    } else if (key == "SigIgn") {
      ok = to_num(value, st.sigign, 16);
    } else if (key == "SigCgt") {
      ok = to_num(value, st.sigcgt, 16);
    } else if (key == "CapInh") {
      ok = to_num(value, st.cap_inh, 16);
    } else if (key == "CapPrm") {
      ok = to_num(value, st.cap_prm, 16);
    } else if (key == "CapEff") {
      ok = to_num(value, st.cap_eff, 16);
    } else if (key == "CapBnd") {
      ok = to_num(value, st.cap_bnd, 16);
    } else if (key == "CapAmb") {
      ok = to_num(value, st.cap_amb, 16);
    } else if (key == "NoNewPrivs") {
      ok = to_num(value, st.no_new_privs);
    } else if (key == "Seccomp") {
      ok = to_num(value, st.seccomp);
    } else if (key == "Seccomp_filters") {
      ok = to_num(value, st.seccomp_filters);
    } else if (key == "Speculation_Store_Bypass") {
      st.speculation_store_bypass = std::string(value);
    } else if (key == "Cpus_allowed_list") {
      st.cpus_allowed_list = std::string(value);
    }
    if (!ok) return bad(std::string(key).c_str());
  }
  static constexpr std::pair<unsigned, const char*> kRequired[] = {
      {kName, "Name"}, {kState, "State"}, {kTgid, "Tgid"}, {kPid, "Pid"},
      {kPPid, "PPid"}, {kUid, "Uid"},     {kGid, "Gid"}};
  for (auto [bit, name] : kRequired)
    if (!(seen & bit)) return fail(parse_error(std::string(source), std::string("no ") + name + " line"));
  return st;
}

// ---- limits --------------------------------------------------------------------------------------

namespace {
// In RLIMIT_* order, as the kernel names them in /proc/PID/limits.
constexpr const char* kRlimitNames[kRlimitCount] = {
    "Max cpu time",       "Max file size",        "Max data size",       "Max stack size",
    "Max core file size", "Max resident set",     "Max processes",       "Max open files",
    "Max locked memory",  "Max address space",    "Max file locks",      "Max pending signals",
    "Max msgqueue size",  "Max nice priority",    "Max realtime priority", "Max realtime timeout"};
static_assert(RLIMIT_CPU == 0 && RLIMIT_RTTIME == 15 && RLIMIT_NLIMITS == kRlimitCount);
}  // namespace

const char* rlimit_line_name(size_t i) { return i < kRlimitCount ? kRlimitNames[i] : nullptr; }

Result<Limits> parse_limits(std::string_view text, std::string_view source) {
  Limits out{};
  std::array<bool, kRlimitCount> seen{};
  auto lines = lines_of(text);
  if (lines.empty() || !starts_with(lines[0], "Limit "))
    return fail(parse_error(std::string(source), "no \"Limit\" header line"));
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    size_t idx = kRlimitCount;
    for (size_t k = 0; k < kRlimitCount; ++k) {
      std::string_view name = kRlimitNames[k];
      // "Max realtime priority" vs "Max realtime timeout": names are matched whole, up to a space.
      if (starts_with(line, name) && line.size() > name.size() && line[name.size()] == ' ') {
        idx = k;
        break;
      }
    }
    if (idx == kRlimitCount) return fail(line_error(source, i + 1, "unknown limit " + quote(line)));
    if (seen[idx]) return fail(line_error(source, i + 1, "duplicate limit " + quote(kRlimitNames[idx])));
    seen[idx] = true;
    auto toks = tokens(line.substr(std::string_view(kRlimitNames[idx]).size()));
    if (toks.size() < 2 || toks.size() > 3)
      return fail(line_error(source, i + 1, "expected soft, hard and units in " + quote(line)));
    auto value = [](std::string_view t, uint64_t& v) {
      if (t == "unlimited") {
        v = RLIM_INFINITY;
        return true;
      }
      return to_num(t, v);
    };
    if (!value(toks[0], out[idx].cur) || !value(toks[1], out[idx].max))
      return fail(line_error(source, i + 1, "bad limit value in " + quote(line)));
  }
  for (size_t k = 0; k < kRlimitCount; ++k)
    if (!seen[k]) return fail(parse_error(std::string(source), std::string("no \"") + kRlimitNames[k] + "\" line"));
  return out;
}

// ---- auxv ----------------------------------------------------------------------------------------

Result<std::vector<AuxvEntry>> parse_auxv(std::string_view bytes, std::string_view source) {
  constexpr size_t kEntry = 2 * sizeof(uint64_t);
  if (bytes.size() % kEntry != 0)
    return fail(parse_error(std::string(source),
                            "size " + std::to_string(bytes.size()) + " is not a multiple of 16"));
  std::vector<AuxvEntry> out;
  for (size_t off = 0; off + kEntry <= bytes.size(); off += kEntry) {
    AuxvEntry e;
    std::memcpy(&e.type, bytes.data() + off, sizeof e.type);
    std::memcpy(&e.value, bytes.data() + off + sizeof e.type, sizeof e.value);
    if (e.type == 0) return out;  // AT_NULL
    out.push_back(e);
  }
  return fail(parse_error(std::string(source), "no AT_NULL terminator"));
}

// ---- mountinfo -----------------------------------------------------------------------------------

std::string decode_octal_escapes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto is_oct = [](char c) { return c >= '0' && c <= '7'; };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && is_oct(s[i + 1]) && is_oct(s[i + 2]) && is_oct(s[i + 3])) {
      out += char(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text, std::string_view source) {
  std::vector<MountInfo> out;
  auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    auto bad = [&](const std::string& what) {
      return fail(line_error(source, i + 1, what + " in " + quote(lines[i])));
    };
    auto t = tokens(lines[i]);
    auto sep = std::find(t.begin(), t.end(), std::string_view("-"));
    if (t.size() < 10 || sep == t.end() || sep - t.begin() < 6)
      return bad("expected \"ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER\"");
    if (t.end() - sep != 4) return bad("expected exactly TYPE SOURCE SUPER after \"-\"");
    MountInfo m;
    if (!to_num(t[0], m.mnt_id)) return bad("bad mount id");
    if (!to_num(t[1], m.parent_id)) return bad("bad parent id");
    size_t colon = t[2].find(':');
    if (colon == std::string_view::npos || !to_num(t[2].substr(0, colon), m.major) ||
        !to_num(t[2].substr(colon + 1), m.minor))
      return bad("bad major:minor");
    m.root = decode_octal_escapes(t[3]);
    m.mount_point = decode_octal_escapes(t[4]);
    m.options = decode_octal_escapes(t[5]);
    for (auto it = t.begin() + 6; it != sep; ++it) {
      std::string_view opt = *it;
      m.optional_fields.emplace_back(opt);
      int* dst = nullptr;
      std::string_view num;
      if (starts_with(opt, "shared:")) {
        dst = &m.shared;
        num = opt.substr(7);
      } else if (starts_with(opt, "master:")) {
        dst = &m.master;
        num = opt.substr(7);
      } else if (starts_with(opt, "propagate_from:")) {
        dst = &m.propagate_from;
        num = opt.substr(15);
      } else if (opt == "unbindable") {
        m.unbindable = true;
      }
      if (dst && (!to_num(num, *dst) || *dst <= 0)) return bad("bad optional field " + quote(opt));
    }
    m.fstype = decode_octal_escapes(sep[1]);
    m.source = decode_octal_escapes(sep[2]);
    m.super_options = decode_octal_escapes(sep[3]);
    out.push_back(std::move(m));
  }
  if (out.empty()) return fail(parse_error(std::string(source), "no mounts"));
  return out;
}

// ---- fdinfo --------------------------------------------------------------------------------------

Result<FdInfo> parse_fdinfo(std::string_view text, std::string_view source) {
  FdInfo info;
  bool have_pos = false, have_flags = false;
  auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view key, raw;
    if (!split_key(lines[i], key, raw) || key.empty())
      return fail(line_error(source, i + 1, "expected \"key: value\", got " + quote(lines[i])));
    std::string_view value = sys::trim(raw);
    bool ok = true;
    if (key == "pos") {
      ok = to_num(value, info.pos);
      have_pos = true;
    } else if (key == "flags") {
      ok = to_num(value, info.flags, 8);
      have_flags = true;
    } else if (key == "mnt_id") {
      ok = to_num(value, info.mnt_id);
    } else if (key == "ino" && !info.ino) {
      uint64_t ino;
      ok = to_num(value, ino);
      if (ok) info.ino = ino;
    } else {
      info.extra.emplace_back(lines[i]);
    }
    if (!ok) return fail(line_error(source, i + 1, "bad " + std::string(key) + " value " + quote(value)));
  }
  if (!have_pos || !have_flags)
    return fail(parse_error(std::string(source), "no pos/flags lines"));
  return info;
}

Result<std::vector<EpollTarget>> parse_epoll_targets(const FdInfo& info, std::string_view source) {
  std::vector<EpollTarget> out;
  for (const auto& line : info.extra) {
    if (!starts_with(line, "tfd:")) continue;
    std::vector<std::pair<std::string_view, std::string_view>> kv;
    auto bad = [&] { return fail(parse_error(std::string(source), "bad epoll target line " + quote(line))); };
    if (!key_values(line, kv)) return bad();
    EpollTarget t;
    auto tfd = find_value(kv, "tfd");
    auto events = find_value(kv, "events");
    auto data = find_value(kv, "data");
    if (!tfd || !events || !data || !to_num(*tfd, t.tfd) || !to_num(*events, t.events, 16) ||
        !to_num(*data, t.data, 16))
      return bad();
    // pos/ino/sdev came later (4.x); absent ones stay 0.
    if (auto v = find_value(kv, "pos"); v && !to_num(*v, t.pos)) return bad();
    if (auto v = find_value(kv, "ino"); v && !to_num(*v, t.ino, 16)) return bad();
    if (auto v = find_value(kv, "sdev"); v && !to_num(*v, t.sdev, 16)) return bad();
    out.push_back(t);
  }
  return out;
}

Result<EventfdInfo> parse_eventfd(const FdInfo& info, std::string_view source) {
  EventfdInfo e;
  bool have_count = false;
  for (const auto& line : info.extra) {
    std::string_view key, raw;
    if (!split_key(line, key, raw)) continue;
    auto value = sys::trim(raw);
    bool ok = true;
    if (key == "eventfd-count") {
      ok = to_num(value, e.count, 16);  // printed in hex
      have_count = true;
    } else if (key == "eventfd-id") {
      uint64_t id;
      ok = to_num(value, id);
      if (ok) e.id = id;
    } else if (key == "eventfd-semaphore") {
      bool s;
      ok = to_num(value, s);
      if (ok) e.semaphore = s;
    }
    if (!ok) return fail(parse_error(std::string(source), "bad eventfd line " + quote(line)));
  }
  if (!have_count) return fail(parse_error(std::string(source), "no eventfd-count line"));
  return e;
}

Result<uint64_t> parse_signalfd_sigmask(const FdInfo& info, std::string_view source) {
  for (const auto& line : info.extra) {
    std::string_view key, raw;
    if (!split_key(line, key, raw) || key != "sigmask") continue;
    uint64_t mask;
    if (!to_num(sys::trim(raw), mask, 16))
      return fail(parse_error(std::string(source), "bad sigmask line " + quote(line)));
    return mask;
  }
  return fail(parse_error(std::string(source), "no sigmask line"));
}

Result<std::vector<InotifyWatch>> parse_inotify(const FdInfo& info, std::string_view source) {
  std::vector<InotifyWatch> out;
  for (const auto& line : info.extra) {
    std::string_view rest = line;
    if (!starts_with(rest, "inotify ")) continue;
    rest.remove_prefix(8);
    auto bad = [&] { return fail(parse_error(std::string(source), "bad inotify line " + quote(line))); };
    std::vector<std::pair<std::string_view, std::string_view>> kv;
    if (!key_values(rest, kv)) return bad();
    InotifyWatch w;
    auto wd = find_value(kv, "wd");
    auto ino = find_value(kv, "ino");
    auto sdev = find_value(kv, "sdev");
    auto mask = find_value(kv, "mask");
    if (!wd || !ino || !sdev || !mask || !to_num(*wd, w.wd, 16) || !to_num(*ino, w.ino, 16) ||
        !to_num(*sdev, w.sdev, 16) || !to_num(*mask, w.mask, 16))
      return bad();
    if (auto v = find_value(kv, "ignored_mask"); v && !to_num(*v, w.ignored_mask, 16)) return bad();
    if (auto v = find_value(kv, "fhandle-bytes"); v && !to_num(*v, w.fhandle_bytes, 16)) return bad();
    if (auto v = find_value(kv, "fhandle-type"); v && !to_num(*v, w.fhandle_type, 16)) return bad();
    if (auto v = find_value(kv, "f_handle")) w.f_handle = std::string(*v);
    out.push_back(std::move(w));
  }
  return out;
}

Result<TimerfdInfo> parse_timerfd(const FdInfo& info, std::string_view source) {
  TimerfdInfo t;
  unsigned seen = 0;
  // "(sec, nsec)"
  auto pair = [](std::string_view v, uint64_t& a, uint64_t& b) {
    if (v.size() < 5 || v.front() != '(' || v.back() != ')') return false;
    v = v.substr(1, v.size() - 2);
    size_t comma = v.find(',');
    return comma != std::string_view::npos && to_num(sys::trim(v.substr(0, comma)), a) &&
           to_num(sys::trim(v.substr(comma + 1)), b);
  };
  for (const auto& line : info.extra) {
    std::string_view key, raw;
    if (!split_key(line, key, raw)) continue;
    auto value = sys::trim(raw);
    bool ok = true;
    if (key == "clockid") {
      ok = to_num(value, t.clockid);
      seen |= 1;
    } else if (key == "ticks") {
      ok = to_num(value, t.ticks);
      seen |= 2;
    } else if (key == "settime flags") {
      ok = to_num(value, t.settime_flags, 8);
      seen |= 4;
    } else if (key == "it_value") {
      ok = pair(value, t.value_sec, t.value_nsec);
      seen |= 8;
    } else if (key == "it_interval") {
      ok = pair(value, t.interval_sec, t.interval_nsec);
      seen |= 16;
    }
    if (!ok) return fail(parse_error(std::string(source), "bad timerfd line " + quote(line)));
  }
  if (seen != 31)
    return fail(parse_error(std::string(source),
                            "missing timerfd lines (need clockid, ticks, settime flags, it_value, it_interval)"));
  return t;
}

// ---- readers -------------------------------------------------------------------------------------

std::string proc_dir(pid_t pid, pid_t tid) {
  std::string d = "/proc/" + std::to_string(pid);
  if (tid > 0) d += "/task/" + std::to_string(tid);
  return d;
}

namespace {
// smaps of a process near max_map_count runs to tens of MiB.
constexpr size_t kMaxProcFile = 512u << 20;

Result<std::string> read_proc(const std::string& path) { return sys::read_file(path, kMaxProcFile); }
}  // namespace

Result<std::vector<Vma>> read_maps(pid_t pid) {
  auto path = proc_dir(pid) + "/maps";
  auto text = CR_TRY(read_proc(path));
  return parse_maps(text, path);
}

Result<std::vector<SmapsEntry>> read_smaps(pid_t pid) {
  auto path = proc_dir(pid) + "/smaps";
  auto text = CR_TRY(read_proc(path));
  return parse_smaps(text, path);
}

Result<Stat> read_stat(pid_t pid, pid_t tid) {
  auto path = proc_dir(pid, tid) + "/stat";
  auto text = CR_TRY(read_proc(path));
  return parse_stat(text, path);
}

Result<TaskStatus> read_status(pid_t pid, pid_t tid) {
  auto path = proc_dir(pid, tid) + "/status";
  auto text = CR_TRY(read_proc(path));
  return parse_status(text, path);
}

Result<Limits> read_limits(pid_t pid) {
  auto path = proc_dir(pid) + "/limits";
  auto text = CR_TRY(read_proc(path));
  return parse_limits(text, path);
}

Result<std::vector<AuxvEntry>> read_auxv(pid_t pid) {
  auto path = proc_dir(pid) + "/auxv";
  auto bytes = CR_TRY(read_proc(path));
  return parse_auxv(bytes, path);
}

Result<std::vector<MountInfo>> read_mountinfo(pid_t pid) {
  auto path = proc_dir(pid) + "/mountinfo";
  auto text = CR_TRY(read_proc(path));
  return parse_mountinfo(text, path);
}

bool is_write_tracking_uffd(const FdInfo& info) {
  constexpr uint64_t kFeatureWpAsync = 1ull << 15;
  for (const auto& line : info.extra) {
    std::string_view l = line;
    if (l.rfind("API:", 0) != 0) continue;
    auto fields = sys::split(sys::trim(l.substr(4)), ':');
    uint64_t features;
    return fields.size() == 3 && to_num(fields[1], features, 16) && (features & kFeatureWpAsync);
  }
  return false;
}

Result<FdInfo> read_fdinfo(pid_t pid, int fd) {
  auto path = proc_dir(pid) + "/fdinfo/" + std::to_string(fd);
  auto text = CR_TRY(read_proc(path));
  return parse_fdinfo(text, path);
}

Result<std::vector<pid_t>> tasks(pid_t pid) {
  auto path = proc_dir(pid) + "/task";
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
  if (!dir) return fail(sys_error("opendir", path));
  std::vector<pid_t> out;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(dir.get());
    if (!de) {
      if (errno) return fail(sys_error("readdir", path));
      break;
    }
    pid_t tid;
    if (de->d_name[0] == '.') continue;
    if (!to_num(std::string_view(de->d_name), tid) || tid <= 0)
      return fail(parse_error(path, "unexpected entry " + quote(de->d_name)));
    out.push_back(tid);
  }
  if (out.empty()) return fail(errno_error(ESRCH, "list tasks", path));
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<pid_t>> children(pid_t pid) {
  auto tids = CR_TRY(tasks(pid));
  std::vector<pid_t> out;
  size_t read_ok = 0;
  for (pid_t tid : tids) {
    auto path = proc_dir(pid, tid) + "/children";
    auto text = sys::read_file(path, 16u << 20);
    if (!text) {
      // A thread that exited after the listing has nothing to say.
      if (text.error().err == ENOENT || text.error().err == ESRCH) continue;
      return fail(std::move(text.error()));
    }
    ++read_ok;
    for (auto t : tokens(*text)) {
      pid_t child;
      if (!to_num(t, child) || child <= 0)
        return fail(parse_error(path, "bad pid " + quote(t)));
      out.push_back(child);
    }
  }
  if (read_ok == 0) return fail(errno_error(ESRCH, "read children", proc_dir(pid)));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::vector<PosixTimer>> parse_timers(std::string_view text, std::string_view source) {
  std::vector<PosixTimer> out;
  auto lines = sys::split(text, '\n');
  for (size_t i = 0; i < lines.size(); i++) {
    std::string_view line = lines[i];
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return fail(line_error(source, i + 1, "no ':' in the line"));
    std::string_view key = line.substr(0, colon), value = sys::trim(line.substr(colon + 1));
    if (key == "ID") {
      uint64_t id;
      if (!sys::parse_u64(value, id) || id > INT32_MAX) return fail(line_error(source, i + 1, "bad timer id"));
      out.push_back({});
      out.back().id = int(id);
      continue;
    }
    if (out.empty()) return fail(line_error(source, i + 1, "timer field before the first ID line"));
    PosixTimer& t = out.back();
    if (key == "signal") {
      auto slash = value.find('/');
      uint64_t signo, sival;
      if (slash == std::string_view::npos || !sys::parse_u64(value.substr(0, slash), signo) ||
          !sys::parse_u64(value.substr(slash + 1), sival, 16) || signo > 64)
        return fail(line_error(source, i + 1, "bad signal field"));
      t.signo = int(signo);
      t.sival = sival;
    } else if (key == "notify") {
      auto slash = value.find('/');
      auto dot = value.find('.');
      uint64_t who;
      if (slash == std::string_view::npos || dot == std::string_view::npos || dot < slash ||
          !sys::parse_u64(value.substr(dot + 1), who))
        return fail(line_error(source, i + 1, "bad notify field"));
      std::string_view kind = value.substr(0, slash), scope = value.substr(slash + 1, dot - slash - 1);
      if (kind == "signal") t.notify = SIGEV_SIGNAL;
      else if (kind == "none") t.notify = SIGEV_NONE;
      else if (kind == "thread") t.notify = SIGEV_THREAD;
      else return fail(line_error(source, i + 1, "unknown notify kind"));
      if (scope == "tid") t.notify |= SIGEV_THREAD_ID;
      t.notify_pid = int(who);
    } else if (key == "ClockID") {
      uint64_t c;
      if (!sys::parse_u64(value, c) || c > INT32_MAX) return fail(line_error(source, i + 1, "bad clock id"));
      t.clock_id = int(c);
    }
  }
  return out;
}

Result<std::vector<PosixTimer>> read_timers(pid_t pid) {
  std::string path = proc_dir(pid) + "/timers";
  auto text = CR_TRY(sys::read_file(path));
  return parse_timers(text, path);
}

Result<uint64_t> ns_inode(pid_t pid, std::string_view ns) {
  if (ns.empty() || ns.find('/') != std::string_view::npos || ns.size() > 32)
    return fail(make_error(Errc::invalid_argument, "ns_inode", std::string(ns), "bad namespace name"));
  auto path = proc_dir(pid) + "/ns/" + std::string(ns);
  auto link = CR_TRY(sys::read_link(path));
  // "net:[4026531840]"
  size_t open = link.find(":[");
  uint64_t ino;
  if (open == std::string::npos || link.back() != ']' ||
      !to_num(std::string_view(link).substr(open + 2, link.size() - open - 3), ino))
    return fail(parse_error(path, "unexpected link target " + quote(link)));
  return ino;
}

}  // namespace crshim::proc

#include "oci/seccomp_check.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::oci {

namespace {

using json = nlohmann::json;

constexpr const char* kField = "linux.seccomp";
constexpr const char* kHint = "restore with the bundle the container was checkpointed from";
// Syscall numbers swept: x86_64 has fewer than 470 today, the margin covers newer kernels.
constexpr int kMaxSyscallNr = 511;
constexpr size_t kMaxConfigText = 4u << 20;
constexpr int kMaxDepth = 64;
// Argument vectors tried per syscall at most (the product of candidate values over its indices).
constexpr size_t kMaxArgVectors = 4096;

Error bad(const std::string& origin, const std::string& field, const std::string& what) {
  return make_error(Errc::invalid_argument, "parse", origin, field + ": " + what);
}

// Depth of [ and { outside strings: nlohmann's parser recurses, so hostile nesting is refused first.
int nesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (ch == ']' || ch == '}') {
      depth--;
    }
  }
  return deepest;
}

Result<uint64_t> u64_of(const json& j, const std::string& origin, const std::string& field) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return uint64_t(j.get<int64_t>());
  return fail(bad(origin, field, "expected a non-negative integer"));
}

Result<std::optional<uint32_t>> errno_of(const json& obj, const char* key, const std::string& origin,
                                         const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::optional<uint32_t>();
  uint64_t v = CR_TRY(u64_of(*it, origin, field));
  if (v > 0xffff)
    return fail(bad(origin, field, std::to_string(v) + " does not fit the 16 bits of a seccomp return value"));
  return std::optional<uint32_t>(uint32_t(v));
}

Result<std::string> string_of(const json& obj, const char* key, const std::string& origin, const std::string& field,
                              bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return fail(bad(origin, field, "missing"));
    return std::string();
  }
  if (!it->is_string()) return fail(bad(origin, field, "expected a string"));
  return it->get<std::string>();
}

Result<std::vector<std::string>> strings_of(const json& obj, const char* key, const std::string& origin,
                                            const std::string& field) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) return fail(bad(origin, field, "expected an array of strings"));
  for (size_t i = 0; i < it->size(); i++) {
    if (!(*it)[i].is_string()) return fail(bad(origin, field + "[" + std::to_string(i) + "]", "expected a string"));
    out.push_back((*it)[i].get<std::string>());
  }
  return out;
}

// The libseccomp action for an OCI action name; ERRNO and TRACE carry errnoRet, EPERM when absent
// (runc's and crun's default).
Result<uint32_t> action_of(const std::string& name, std::optional<uint32_t> errno_ret, const std::string& field) {
  uint32_t data = errno_ret.value_or(EPERM);
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return uint32_t(SCMP_ACT_KILL_THREAD);
  if (name == "SCMP_ACT_KILL_PROCESS") return uint32_t(SCMP_ACT_KILL_PROCESS);
  if (name == "SCMP_ACT_TRAP") return uint32_t(SCMP_ACT_TRAP);
  if (name == "SCMP_ACT_ERRNO") return uint32_t(SCMP_ACT_ERRNO(data));
  if (name == "SCMP_ACT_TRACE") return uint32_t(SCMP_ACT_TRACE(data));
  if (name == "SCMP_ACT_ALLOW") return uint32_t(SCMP_ACT_ALLOW);
  if (name == "SCMP_ACT_LOG") return uint32_t(SCMP_ACT_LOG);
  if (name == "SCMP_ACT_NOTIFY") return uint32_t(SCMP_ACT_NOTIFY);
  return fail(make_error(Errc::unsupported, "build", kField, field + ": unknown action '" + name + "'"));
}

Result<scmp_compare> op_of(const std::string& name, const std::string& field) {
  static const std::map<std::string, scmp_compare> ops = {
      {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  auto it = ops.find(name);
  if (it == ops.end())
    return fail(make_error(Errc::unsupported, "build", kField, field + ": unknown operator '" + name + "'"));
  return it->second;
}

Error lib_error(int rc, const std::string& op, const std::string& what) {
  return errno_error(-rc, op, kField, what);
}

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

// The native syscall number of `name`, nullopt when libseccomp does not know it here.
std::optional<int> native_nr(const std::string& name) {
  int nr = seccomp_syscall_resolve_name(name.c_str());
  if (nr == __NR_SCMP_ERROR) return std::nullopt;
  return nr;
}

// "getpriority (140)"; on i386 "getpriority (96, x86)".
std::string syscall_name(uint32_t arch, int nr) {
  std::string num = std::to_string(nr) + (arch == SCMP_ARCH_X86 ? ", x86" : "");
  char* name = seccomp_syscall_resolve_num_arch(arch, nr);
  if (!name) return num;
  std::string out = std::string(name) + " (" + num + ")";
  ::free(name);
  return out;
}

// What the kernel makes of a return value: unknown actions kill the process, an errno is capped at
// MAX_ERRNO, data only matters for TRAP, ERRNO and TRACE.
uint32_t effective(uint32_t ret) {
  uint32_t action = ret & SECCOMP_RET_ACTION_FULL, data = ret & SECCOMP_RET_DATA;
  switch (action) {
    case SECCOMP_RET_ERRNO: return action | std::min<uint32_t>(data, 4095);
    case SECCOMP_RET_TRAP:
    case SECCOMP_RET_TRACE: return ret;
    case SECCOMP_RET_KILL_PROCESS:
    case SECCOMP_RET_KILL_THREAD:
    case SECCOMP_RET_USER_NOTIF:
    case SECCOMP_RET_LOG:
    case SECCOMP_RET_ALLOW: return action;
    default: return SECCOMP_RET_KILL_PROCESS;
  }
}

// Values around one condition: ones that satisfy it and ones that do not, with the high word
// flipped too (a filter comparing only 32 bits shows there).
void candidates(const SeccompArg& a, std::set<uint64_t>& out) {
  auto add = [&](uint64_t v) {
    out.insert(v);
    out.insert(v ^ (uint64_t(1) << 32));
  };
  if (a.op == "SCMP_CMP_MASKED_EQ") {
    add(a.value_two);
    add(a.value_two | ~a.value);  // bits outside the mask do not count
    uint64_t low_bit = a.value & (~a.value + 1);
    if (low_bit) add(a.value_two ^ low_bit);
    add(~a.value_two & a.value);
  } else {
    add(a.value);
    add(a.value - 1);
    add(a.value + 1);
  }
  out.insert(0);
  out.insert(~uint64_t(0));
}

// Argument vectors for a syscall whose rules test `conds`: every combination of the candidate values
// of the indices tested, or, when that is too many, each index varied alone.
std::vector<std::array<uint64_t, 6>> arg_vectors(const std::vector<SeccompArg>& conds) {
  std::map<uint32_t, std::set<uint64_t>> per_index;
  for (const auto& c : conds) candidates(c, per_index[c.index]);
  std::vector<std::array<uint64_t, 6>> out{std::array<uint64_t, 6>{}};
  size_t product = 1;
  for (const auto& [i, vals] : per_index) product = std::min(product * vals.size(), kMaxArgVectors + 1);
  if (product <= kMaxArgVectors) {
    for (const auto& [i, vals] : per_index) {
      std::vector<std::array<uint64_t, 6>> next;
      for (const auto& base : out)
        for (uint64_t v : vals) {
          auto a = base;
          a[i] = v;
          next.push_back(a);
        }
      out = std::move(next);
    }
  } else {
    for (const auto& [i, vals] : per_index)
      for (uint64_t v : vals) {
        std::array<uint64_t, 6> a{};
        a[i] = v;
        out.push_back(a);
      }
  }
  return out;
}

std::string args_text(const std::array<uint64_t, 6>& a) {
  std::string s;
  for (int i = 0; i < 6; i++) {
    if (!a[i]) continue;
    char buf[48];
    snprintf(buf, sizeof buf, "%sarg%d=0x%llx", s.empty() ? "" : ", ", i, (unsigned long long)a[i]);
    s += buf;
  }
  return s;
}

}  // namespace

Result<std::optional<SeccompProfile>> parse_seccomp_profile(std::string_view text, const std::string& origin) {
  if (text.size() > kMaxConfigText) return fail(bad(origin, "(file)", "too large"));
  if (nesting(text) > kMaxDepth) return fail(bad(origin, "(file)", "nested too deep"));
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception&) {
    return fail(make_error(Errc::invalid_argument, "parse", origin, "not valid JSON"));
  }
  if (!doc.is_object()) return std::optional<SeccompProfile>();
  auto linux_it = doc.find("linux");
  if (linux_it == doc.end() || !linux_it->is_object()) return std::optional<SeccompProfile>();
  auto it = linux_it->find("seccomp");
  if (it == linux_it->end()) return std::optional<SeccompProfile>();
  if (!it->is_object()) return fail(bad(origin, kField, "expected an object"));
  const json& s = *it;
  SeccompProfile p;
  p.default_action = CR_TRY(string_of(s, "defaultAction", origin, "linux.seccomp.defaultAction", true));
  p.default_errno_ret = CR_TRY(errno_of(s, "defaultErrnoRet", origin, "linux.seccomp.defaultErrnoRet"));
  p.architectures = CR_TRY(strings_of(s, "architectures", origin, "linux.seccomp.architectures"));
  auto calls = s.find("syscalls");
  if (calls != s.end() && !calls->is_null()) {
    if (!calls->is_array()) return fail(bad(origin, "linux.seccomp.syscalls", "expected an array"));
    for (size_t i = 0; i < calls->size(); i++) {
      const std::string f = "linux.seccomp.syscalls[" + std::to_string(i) + "]";
      const json& c = (*calls)[i];
      if (!c.is_object()) return fail(bad(origin, f, "expected an object"));
      SeccompRule r;
      r.names = CR_TRY(strings_of(c, "names", origin, f + ".names"));
      r.action = CR_TRY(string_of(c, "action", origin, f + ".action", true));
      r.errno_ret = CR_TRY(errno_of(c, "errnoRet", origin, f + ".errnoRet"));
      auto args = c.find("args");
      if (args != c.end() && !args->is_null()) {
        if (!args->is_array()) return fail(bad(origin, f + ".args", "expected an array"));
        for (size_t k = 0; k < args->size(); k++) {
          const std::string af = f + ".args[" + std::to_string(k) + "]";
          const json& a = (*args)[k];
          if (!a.is_object()) return fail(bad(origin, af, "expected an object"));
          SeccompArg arg;
          auto idx = a.find("index");
          if (idx == a.end()) return fail(bad(origin, af + ".index", "missing"));
          uint64_t index = CR_TRY(u64_of(*idx, origin, af + ".index"));
          if (index > 5) return fail(bad(origin, af + ".index", std::to_string(index) + " is not 0..5"));
          arg.index = uint32_t(index);
          auto v = a.find("value");
          if (v != a.end()) arg.value = CR_TRY(u64_of(*v, origin, af + ".value"));
          auto v2 = a.find("valueTwo");
          if (v2 != a.end()) arg.value_two = CR_TRY(u64_of(*v2, origin, af + ".valueTwo"));
          arg.op = CR_TRY(string_of(a, "op", origin, af + ".op", true));
          r.args.push_back(std::move(arg));
        }
      }
      p.syscalls.push_back(std::move(r));
    }
  }
  return std::optional<SeccompProfile>(std::move(p));
}

Result<std::vector<sock_filter>> build_seccomp_filter(const SeccompProfile& profile) {
  uint32_t def = CR_TRY(action_of(profile.default_action, profile.default_errno_ret, "linux.seccomp.defaultAction"));
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(def));
  if (!ctx) return fail(make_error(Errc::unsupported, "seccomp_init", kField,
                                   "libseccomp refuses default action " + profile.default_action));
  for (const auto& arch : profile.architectures) {
    std::string name = arch.rfind("SCMP_ARCH_", 0) == 0 ? arch.substr(10) : arch;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    uint32_t token = seccomp_arch_resolve_name(name.c_str());
    if (!token) return fail(make_error(Errc::unsupported, "build", kField, "unknown architecture '" + arch + "'"));
    int rc = seccomp_arch_add(ctx.get(), token);
    if (rc < 0 && rc != -EEXIST) return fail(lib_error(rc, "seccomp_arch_add", arch));
  }
  for (size_t i = 0; i < profile.syscalls.size(); i++) {
    const SeccompRule& r = profile.syscalls[i];
    const std::string f = "linux.seccomp.syscalls[" + std::to_string(i) + "]";
    uint32_t act = CR_TRY(action_of(r.action, r.errno_ret, f + ".action"));
    // libseccomp refuses a rule that repeats the default; runc skips it.
    if (act == def) continue;
    std::vector<scmp_arg_cmp> conds;
    std::set<uint32_t> indices;
    bool repeated = false;
    for (const auto& a : r.args) {
      scmp_compare op = CR_TRY(op_of(a.op, f + ".args"));
      conds.push_back(op == SCMP_CMP_MASKED_EQ ? scmp_arg_cmp{a.index, op, a.value, a.value_two}
                                               : scmp_arg_cmp{a.index, op, a.value, 0});
      repeated |= !indices.insert(a.index).second;
    }
    for (const auto& name : r.names) {
      // A name this libseccomp does not know is skipped, as runc does.
      auto nr = native_nr(name);
      if (!nr) continue;
      // Conditions on one index cannot be ANDed by libseccomp: runc adds each as a rule of its own.
      std::vector<std::vector<scmp_arg_cmp>> rules;
      if (repeated)
        for (const auto& c : conds) rules.push_back({c});
      else
        rules.push_back(conds);
      for (const auto& rule : rules) {
        int rc =
            seccomp_rule_add_array(ctx.get(), act, *nr, unsigned(rule.size()), rule.empty() ? nullptr : rule.data());
        if (rc < 0) return fail(lib_error(rc, "seccomp_rule_add", f + " " + name));
      }
    }
  }
  UniqueFd fd(::memfd_create("crshim-seccomp", MFD_CLOEXEC));
  if (!fd.valid()) return fail(sys_error("memfd_create", kField));
  int rc = seccomp_export_bpf(ctx.get(), fd.get());
  if (rc < 0) return fail(lib_error(rc, "seccomp_export_bpf", "the bundle's profile"));
  if (::lseek(fd.get(), 0, SEEK_SET) < 0) return fail(sys_error("lseek", kField));
  std::string bytes = CR_TRY(sys::read_all(fd.get(), "exported seccomp filter", 1u << 20));
  if (bytes.empty() || bytes.size() % sizeof(sock_filter))
    return fail(make_error(Errc::internal, "seccomp_export_bpf", kField,
                           "exported " + std::to_string(bytes.size()) + " bytes, not whole BPF instructions"));
  std::vector<sock_filter> prog(bytes.size() / sizeof(sock_filter));
  memcpy(prog.data(), bytes.data(), bytes.size());
  return prog;
}

Status validate_seccomp_program(std::span<const sock_filter> prog, const std::string& what) {
  auto bad_insn = [&](size_t pc, const std::string& why) {
    char buf[96];
    snprintf(buf, sizeof buf, "instruction %zu (code 0x%04x): ", pc, pc < prog.size() ? prog[pc].code : 0);
    return fail(make_error(Errc::corrupt_image, "check", what, buf + why));
  };
  if (prog.empty() || prog.size() > BPF_MAXINSNS)
    return fail(make_error(Errc::corrupt_image, "check", what,
                           std::to_string(prog.size()) + " instructions, not 1.." + std::to_string(BPF_MAXINSNS)));
  const size_t n = prog.size();
  for (size_t pc = 0; pc < n; pc++) {
    const sock_filter& f = prog[pc];
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        if (f.k >= sizeof(seccomp_data) || (f.k & 3)) return bad_insn(pc, "load outside struct seccomp_data");
        break;
      case BPF_LD | BPF_W | BPF_LEN:
      case BPF_LDX | BPF_W | BPF_LEN:
      case BPF_LD | BPF_IMM:
      case BPF_LDX | BPF_IMM:
      case BPF_RET | BPF_K:
      case BPF_RET | BPF_A:
      case BPF_MISC | BPF_TAX:
      case BPF_MISC | BPF_TXA:
      case BPF_ALU | BPF_NEG:
      case BPF_ALU | BPF_ADD | BPF_K: case BPF_ALU | BPF_ADD | BPF_X:
      case BPF_ALU | BPF_SUB | BPF_K: case BPF_ALU | BPF_SUB | BPF_X:
      case BPF_ALU | BPF_MUL | BPF_K: case BPF_ALU | BPF_MUL | BPF_X:
      case BPF_ALU | BPF_DIV | BPF_X:
      case BPF_ALU | BPF_AND | BPF_K: case BPF_ALU | BPF_AND | BPF_X:
      case BPF_ALU | BPF_OR | BPF_K: case BPF_ALU | BPF_OR | BPF_X:
      case BPF_ALU | BPF_XOR | BPF_K: case BPF_ALU | BPF_XOR | BPF_X:
      case BPF_ALU | BPF_LSH | BPF_X:
      case BPF_ALU | BPF_RSH | BPF_X:
        break;
      case BPF_ALU | BPF_DIV | BPF_K:
        if (f.k == 0) return bad_insn(pc, "division by zero");
        break;
      case BPF_ALU | BPF_LSH | BPF_K:
      case BPF_ALU | BPF_RSH | BPF_K:
        if (f.k >= 32) return bad_insn(pc, "shift by " + std::to_string(f.k));
        break;
      case BPF_LD | BPF_MEM:
      case BPF_LDX | BPF_MEM:
      case BPF_ST:
      case BPF_STX:
        if (f.k >= BPF_MEMWORDS) return bad_insn(pc, "scratch memory index " + std::to_string(f.k));
        break;
      case BPF_JMP | BPF_JA:
        if (uint64_t(f.k) >= n - pc - 1) return bad_insn(pc, "jump past the end");
        break;
      case BPF_JMP | BPF_JEQ | BPF_K: case BPF_JMP | BPF_JEQ | BPF_X:
      case BPF_JMP | BPF_JGT | BPF_K: case BPF_JMP | BPF_JGT | BPF_X:
      case BPF_JMP | BPF_JGE | BPF_K: case BPF_JMP | BPF_JGE | BPF_X:
      case BPF_JMP | BPF_JSET | BPF_K: case BPF_JMP | BPF_JSET | BPF_X:
        if (size_t(f.jt) >= n - pc - 1 || size_t(f.jf) >= n - pc - 1) return bad_insn(pc, "jump past the end");
        break;
      default:
        return bad_insn(pc, "not an instruction seccomp allows");
    }
  }
  if (BPF_CLASS(prog[n - 1].code) != BPF_RET) return bad_insn(n - 1, "the program does not end with a return");
  return {};
}

Result<uint32_t> run_seccomp_program(std::span<const sock_filter> prog, const SeccompData& data,
                                     const std::string& what) {
  CR_OK(validate_seccomp_program(prog, what));
  seccomp_data in{};
  in.nr = data.nr;
  in.arch = data.arch;
  in.instruction_pointer = data.instruction_pointer;
  for (int i = 0; i < 6; i++) in.args[i] = data.args[i];
  unsigned char raw[sizeof in];
  memcpy(raw, &in, sizeof in);
  uint32_t A = 0, X = 0, mem[BPF_MEMWORDS] = {};
  // Jumps only go forward, so each instruction runs at most once.
  for (size_t pc = 0; pc < prog.size(); pc++) {
    const sock_filter& f = prog[pc];
    const uint32_t src = BPF_SRC(f.code) == BPF_X ? X : f.k;
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS: memcpy(&A, raw + f.k, 4); break;
      case BPF_LD | BPF_W | BPF_LEN: A = sizeof in; break;
      case BPF_LDX | BPF_W | BPF_LEN: X = sizeof in; break;
      case BPF_LD | BPF_IMM: A = f.k; break;
      case BPF_LDX | BPF_IMM: X = f.k; break;
      case BPF_LD | BPF_MEM: A = mem[f.k]; break;
      case BPF_LDX | BPF_MEM: X = mem[f.k]; break;
      case BPF_ST: mem[f.k] = A; break;
      case BPF_STX: mem[f.k] = X; break;
      case BPF_MISC | BPF_TAX: X = A; break;
      case BPF_MISC | BPF_TXA: A = X; break;
      case BPF_RET | BPF_K: return uint32_t(f.k);
      case BPF_RET | BPF_A: return A;
      case BPF_ALU | BPF_NEG: A = uint32_t(-int64_t(A)); break;
      case BPF_ALU | BPF_ADD | BPF_K: case BPF_ALU | BPF_ADD | BPF_X: A += src; break;
      case BPF_ALU | BPF_SUB | BPF_K: case BPF_ALU | BPF_SUB | BPF_X: A -= src; break;
      case BPF_ALU | BPF_MUL | BPF_K: case BPF_ALU | BPF_MUL | BPF_X: A *= src; break;
      case BPF_ALU | BPF_DIV | BPF_K: case BPF_ALU | BPF_DIV | BPF_X:
        if (src == 0) return uint32_t(0);  // the kernel ends the program with 0 (kill)
        A /= src;
        break;
      case BPF_ALU | BPF_AND | BPF_K: case BPF_ALU | BPF_AND | BPF_X: A &= src; break;
      case BPF_ALU | BPF_OR | BPF_K: case BPF_ALU | BPF_OR | BPF_X: A |= src; break;
      case BPF_ALU | BPF_XOR | BPF_K: case BPF_ALU | BPF_XOR | BPF_X: A ^= src; break;
      case BPF_ALU | BPF_LSH | BPF_K: case BPF_ALU | BPF_LSH | BPF_X: A = src >= 32 ? 0 : A << src; break;
      case BPF_ALU | BPF_RSH | BPF_K: case BPF_ALU | BPF_RSH | BPF_X: A = src >= 32 ? 0 : A >> src; break;
      case BPF_JMP | BPF_JA: pc += f.k; break;
      case BPF_JMP | BPF_JEQ | BPF_K: case BPF_JMP | BPF_JEQ | BPF_X: pc += A == src ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGT | BPF_K: case BPF_JMP | BPF_JGT | BPF_X: pc += A > src ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGE | BPF_K: case BPF_JMP | BPF_JGE | BPF_X: pc += A >= src ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JSET | BPF_K: case BPF_JMP | BPF_JSET | BPF_X: pc += (A & src) ? f.jt : f.jf; break;
      default:
        return fail(make_error(Errc::internal, "run", what, "unchecked instruction " + std::to_string(pc)));
    }
  }
  return fail(make_error(Errc::internal, "run", what, "ran past the end"));
}

Result<SeccompChain> image_seccomp_chain(const seccomp_entry& image, uint32_t head) {
  SeccompChain chain;
  const int count = image.seccomp_filters_size();
  for (uint32_t i = head;;) {
    if (i >= uint32_t(count) || chain.size() >= size_t(count))
      return fail(make_error(Errc::corrupt_image, "read", "seccomp.img",
                             "bad filter chain at filter " + std::to_string(i)));
    const std::string& bytes = image.seccomp_filters(int(i)).filter();
    if (bytes.empty() || bytes.size() % sizeof(sock_filter))
      return fail(make_error(Errc::corrupt_image, "read", "seccomp.img",
                             "filter " + std::to_string(i) + " is not a BPF program"));
    std::vector<sock_filter> prog(bytes.size() / sizeof(sock_filter));
    memcpy(prog.data(), bytes.data(), bytes.size());
    CR_OK(validate_seccomp_program(prog, "seccomp.img filter " + std::to_string(i)));
    chain.push_back(std::move(prog));
    if (!image.seccomp_filters(int(i)).has_prev()) break;
    i = image.seccomp_filters(int(i)).prev();
  }
  return chain;
}

Result<uint32_t> run_seccomp_chain(const SeccompChain& chain, const SeccompData& data) {
  uint32_t ret = SECCOMP_RET_ALLOW;
  for (size_t i = 0; i < chain.size(); i++) {
    uint32_t cur = CR_TRY(run_seccomp_program(chain[i], data, "seccomp.img filter " + std::to_string(i)));
    // The kernel's order: the action as a signed number, smallest wins; strict, so the newest keeps ties.
    if (int32_t(cur & SECCOMP_RET_ACTION_FULL) < int32_t(ret & SECCOMP_RET_ACTION_FULL)) ret = cur;
  }
  return ret;
}

std::string seccomp_action_text(uint32_t ret) {
  uint32_t data = ret & SECCOMP_RET_DATA;
  switch (ret & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_KILL_PROCESS: return "KILL_PROCESS";
    case SECCOMP_RET_KILL_THREAD: return "KILL_THREAD";
    case SECCOMP_RET_TRAP: return "TRAP(" + std::to_string(data) + ")";
    case SECCOMP_RET_ERRNO: return "ERRNO(" + std::to_string(data) + ", " + errno_name(int(data)) + ")";
    case SECCOMP_RET_USER_NOTIF: return "USER_NOTIF";
    case SECCOMP_RET_TRACE: return "TRACE(" + std::to_string(data) + ")";
    case SECCOMP_RET_LOG: return "LOG";
    case SECCOMP_RET_ALLOW: return "ALLOW";
  }
  char buf[32];
  snprintf(buf, sizeof buf, "unknown action 0x%08x", ret);
  return buf;
}

Status compare_seccomp(const SeccompProfile& profile, std::span<const sock_filter> bundle, const SeccompChain& chain) {
  CR_OK(validate_seccomp_program(bundle, "the filter built from linux.seccomp"));
  const bool default_allows = profile.default_action == "SCMP_ACT_ALLOW" || profile.default_action == "SCMP_ACT_LOG";
  SeccompChain bundle_chain{std::vector<sock_filter>(bundle.begin(), bundle.end())};
  // x86_64 always; i386 when the profile lists it (else both filters give it their bad-arch action,
  // which runtimes choose differently). libseccomp's arch tokens are the AUDIT_ARCH values.
  std::vector<uint32_t> arches = {SCMP_ARCH_X86_64};
  const auto& listed = profile.architectures;
  if (std::find(listed.begin(), listed.end(), "SCMP_ARCH_X86") != listed.end()) arches.push_back(SCMP_ARCH_X86);
  for (uint32_t arch : arches) {
    // The argument conditions per syscall number, and the highest number the profile names.
    std::map<int, std::vector<SeccompArg>> conds;
    int highest = -1;
    for (const auto& r : profile.syscalls)
      for (const auto& name : r.names)
        if (int nr = seccomp_syscall_resolve_name_arch(arch, name.c_str()); nr >= 0) {
          highest = std::max(highest, nr);
          conds[nr].insert(conds[nr].end(), r.args.begin(), r.args.end());
        }
    for (int nr = 0; nr <= kMaxSyscallNr; nr++) {
      auto it = conds.find(nr);
      auto vectors = it == conds.end() ? std::vector<std::array<uint64_t, 6>>{std::array<uint64_t, 6>{}}
                                       : arg_vectors(it->second);
      for (const auto& args : vectors) {
        SeccompData d;
        d.nr = nr;
        d.arch = arch;
        std::copy(args.begin(), args.end(), d.args);
        uint32_t want = effective(CR_TRY(run_seccomp_chain(bundle_chain, d)));
        uint32_t have = effective(CR_TRY(run_seccomp_chain(chain, d)));
        if (want == have) continue;
        // runc makes syscalls newer than any the profile names fail with ENOSYS rather than the
        // (denying) default, so that programs fall back to older calls.
        if (have == (SECCOMP_RET_ERRNO | ENOSYS) && nr > highest && !default_allows) continue;
        std::string with = args_text(args);
        return fail(make_error(Errc::invalid_argument, "restore", kField,
                               "syscall " + syscall_name(arch, nr) + (with.empty() ? "" : " with " + with) +
                                   ": the bundle's profile gives " + seccomp_action_text(want) +
                                   " but the checkpointed filter gives " + seccomp_action_text(have))
                        .with_hint(kHint));
      }
    }
  }
  return {};
}

Status check_seccomp_matches(const std::string& bundle_dir, const seccomp_entry& image, uint32_t head) {
  const std::string path = bundle_dir + "/config.json";
  std::string text = CR_TRY(sys::read_file(path, kMaxConfigText));
  auto profile = CR_TRY(parse_seccomp_profile(text, path));
  if (!profile) return {};
  auto bundle = CR_TRY(build_seccomp_filter(*profile));
  auto chain = CR_TRY(image_seccomp_chain(image, head));
  return compare_seccomp(*profile, bundle, chain);
}

}  // namespace crshim::oci

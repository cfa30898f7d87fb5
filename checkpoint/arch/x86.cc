#include "checkpoint/arch/x86.h"

#include <asm/ldt.h>
#include <sys/ptrace.h>

#include <cstring>

namespace crshim::arch {

namespace {

constexpr size_t kFxsaveSize = 512;
constexpr size_t kXsaveHeader = 512;  // XSTATE_BV lives at the start of the 64-byte header
constexpr int kTlsFirstEntry = 12;    // GDT_ENTRY_TLS_MIN on x86-64
constexpr int kTlsEntries = 3;

// Which image field holds XSAVE component `index`, and how many words it has.
struct ComponentField {
  int index;
  size_t bytes;
};
constexpr ComponentField kComponents[] = {
    {2, 256},   // AVX: upper halves of YMM0-15 -> ymmh_space
    {3, 64},    // MPX BND0-3 -> bndreg_state
    {4, 64},    // MPX BNDCFGU/BNDSTATUS -> bndcsr_state
    {5, 64},    // AVX-512 opmask k0-7 -> opmask_reg
    {6, 512},   // AVX-512 ZMM0-15 upper 256 bits -> zmm_upper
    {7, 1024},  // AVX-512 ZMM16-31 -> hi16_zmm
    {9, 8},     // PKRU -> pkru
};

const kernel::XsaveComponent* find_component(const kernel::XsaveLayout& layout, int index) {
  for (const auto& c : layout.components)
    if (int(c.index) == index) return &c;
  return nullptr;
}

template <class T, class Field>
void put_words(Field* field, const uint8_t* src, size_t bytes) {
  field->Clear();
  for (size_t i = 0; i < bytes / sizeof(T); i++) {
    T w;
    memcpy(&w, src + i * sizeof(T), sizeof(T));
    field->Add(w);
  }
}

template <class T, class Field>
void get_words(const Field& field, uint8_t* dst, size_t bytes) {
  for (size_t i = 0; i < bytes / sizeof(T) && int(i) < field.size(); i++) {
    T w = field.Get(int(i));
    memcpy(dst + i * sizeof(T), &w, sizeof(T));
  }
}

size_t field_size(const user_x86_xsave_entry& x, int index) {
  switch (index) {
    case 2: return size_t(x.ymmh_space_size()) * 4;
    case 3: return size_t(x.bndreg_state_size()) * 8;
    case 4: return size_t(x.bndcsr_state_size()) * 8;
    case 5: return size_t(x.opmask_reg_size()) * 8;
    case 6: return size_t(x.zmm_upper_size()) * 8;
    case 7: return size_t(x.hi16_zmm_size()) * 8;
    case 9: return size_t(x.pkru_size()) * 4;
  }
  return 0;
}

}  // namespace

void regs_to_image(const kernel::Regs& r, user_x86_regs_entry& o) {
  o.set_r15(r.r15);
  o.set_r14(r.r14);
  o.set_r13(r.r13);
  o.set_r12(r.r12);
  o.set_bp(r.rbp);
  o.set_bx(r.rbx);
  o.set_r11(r.r11);
  o.set_r10(r.r10);
  o.set_r9(r.r9);
  o.set_r8(r.r8);
  o.set_ax(r.rax);
  o.set_cx(r.rcx);
  o.set_dx(r.rdx);
  o.set_si(r.rsi);
  o.set_di(r.rdi);
  o.set_orig_ax(r.orig_rax);
  o.set_ip(r.rip);
  o.set_cs(r.cs);
  o.set_flags(r.eflags);
  o.set_sp(r.rsp);
  o.set_ss(r.ss);
  o.set_fs_base(r.fs_base);
  o.set_gs_base(r.gs_base);
  o.set_ds(r.ds);
  o.set_es(r.es);
  o.set_fs(r.fs);
  o.set_gs(r.gs);
  o.set_mode(NATIVE);
}

kernel::Regs regs_from_image(const user_x86_regs_entry& i) {
  kernel::Regs r;
  r.r15 = i.r15();
  r.r14 = i.r14();
  r.r13 = i.r13();
  r.r12 = i.r12();
  r.rbp = i.bp();
  r.rbx = i.bx();
  r.r11 = i.r11();
  r.r10 = i.r10();
  r.r9 = i.r9();
  r.r8 = i.r8();
  r.rax = i.ax();
  r.rcx = i.cx();
  r.rdx = i.dx();
  r.rsi = i.si();
  r.rdi = i.di();
  r.orig_rax = i.orig_ax();
  r.rip = i.ip();
  r.cs = i.cs();
  r.eflags = i.flags();
  r.rsp = i.sp();
  r.ss = i.ss();
  r.fs_base = i.fs_base();
  r.gs_base = i.gs_base();
  r.ds = i.ds();
  r.es = i.es();
  r.fs = i.fs();
  r.gs = i.gs();
  return r;
}

Status fpu_to_image(const kernel::XState& xs, const kernel::XsaveLayout& layout, user_x86_fpregs_entry& o) {
  if (xs.bytes.size() < kFxsaveSize + 64)
    return fail(make_error(Errc::internal, "dump", "FPU state", "XSAVE buffer of " + std::to_string(xs.bytes.size()) + " bytes"));
  user_fpregs_struct fx;
  memcpy(&fx, xs.bytes.data(), sizeof fx);
  o.set_cwd(fx.cwd);
  o.set_swd(fx.swd);
  o.set_twd(fx.ftw);
  o.set_fop(fx.fop);
  o.set_rip(fx.rip);
  o.set_rdp(fx.rdp);
  o.set_mxcsr(fx.mxcsr);
  o.set_mxcsr_mask(fx.mxcr_mask);
  put_words<uint32_t>(o.mutable_st_space(), reinterpret_cast<const uint8_t*>(fx.st_space), 128);
  put_words<uint32_t>(o.mutable_xmm_space(), reinterpret_cast<const uint8_t*>(fx.xmm_space), 256);

  user_x86_xsave_entry* x = o.mutable_xsave();
  x->set_xstate_bv(xs.xstate_bv());
  for (const auto& cf : kComponents) {
    const auto* c = find_component(layout, cf.index);
    if (!c || !(layout.xcr0 >> cf.index & 1)) continue;
    if (c->offset + cf.bytes > xs.bytes.size() || c->size < cf.bytes)
      return fail(make_error(Errc::internal, "dump", "FPU state", "XSAVE component " + std::to_string(cf.index) + " out of range"));
    const uint8_t* src = xs.bytes.data() + c->offset;
    switch (cf.index) {
      case 2: put_words<uint32_t>(x->mutable_ymmh_space(), src, cf.bytes); break;
      case 3: put_words<uint64_t>(x->mutable_bndreg_state(), src, cf.bytes); break;
      case 4: put_words<uint64_t>(x->mutable_bndcsr_state(), src, cf.bytes); break;
      case 5: put_words<uint64_t>(x->mutable_opmask_reg(), src, cf.bytes); break;
      case 6: put_words<uint64_t>(x->mutable_zmm_upper(), src, cf.bytes); break;
      case 7: put_words<uint64_t>(x->mutable_hi16_zmm(), src, cf.bytes); break;
      case 9: put_words<uint32_t>(x->mutable_pkru(), src, cf.bytes); break;
    }
  }
  // State we cannot describe in the image (AMX tiles, ...) must not be silently dropped.
  uint64_t known = 0x3;
  for (const auto& cf : kComponents) known |= uint64_t(1) << cf.index;
  if (uint64_t extra = xs.xstate_bv() & ~known) {
    char hex[32];
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)extra);
    return fail(make_error(Errc::unsupported, "dump", "FPU state", std::string("XSAVE components ") + hex + " in use"));
  }
  return {};
}

Status fpu_from_image(const user_x86_fpregs_entry& in, const kernel::XsaveLayout& layout, kernel::XState& xs) {
  if (xs.bytes.size() < kFxsaveSize + 64)
    return fail(make_error(Errc::internal, "restore", "FPU state", "XSAVE buffer too small"));
  user_fpregs_struct fx;
  memcpy(&fx, xs.bytes.data(), sizeof fx);  // keeps the software-reserved bytes
  fx.cwd = uint16_t(in.cwd());
  fx.swd = uint16_t(in.swd());
  fx.ftw = uint16_t(in.twd());
  fx.fop = uint16_t(in.fop());
  fx.rip = in.rip();
  fx.rdp = in.rdp();
  fx.mxcsr = in.mxcsr();
  fx.mxcr_mask = in.mxcsr_mask();
  get_words<uint32_t>(in.st_space(), reinterpret_cast<uint8_t*>(fx.st_space), 128);
  get_words<uint32_t>(in.xmm_space(), reinterpret_cast<uint8_t*>(fx.xmm_space), 256);
  memcpy(xs.bytes.data(), &fx, sizeof fx);

  uint64_t bv = 0x3;  // x87 and SSE always come from the legacy area
  if (in.has_xsave()) {
    const auto& x = in.xsave();
    for (const auto& cf : kComponents) {
      if (!(x.xstate_bv() >> cf.index & 1)) continue;
      const auto* c = find_component(layout, cf.index);
      if (!c || !(layout.xcr0 >> cf.index & 1))
        return fail(make_error(Errc::incompatible, "restore", "FPU state",
                               "the image uses XSAVE component " + std::to_string(cf.index) + " which this CPU lacks")
                        .with_hint("restore on a CPU with the same features as the one the dump was made on"));
      if (field_size(x, cf.index) < cf.bytes)
        return fail(make_error(Errc::corrupt_image, "restore", "FPU state", "short XSAVE component " + std::to_string(cf.index)));
      if (c->offset + cf.bytes > xs.bytes.size())
        return fail(make_error(Errc::incompatible, "restore", "FPU state", "XSAVE layout differs"));
      uint8_t* dst = xs.bytes.data() + c->offset;
      switch (cf.index) {
        case 2: get_words<uint32_t>(x.ymmh_space(), dst, cf.bytes); break;
        case 3: get_words<uint64_t>(x.bndreg_state(), dst, cf.bytes); break;
        case 4: get_words<uint64_t>(x.bndcsr_state(), dst, cf.bytes); break;
        case 5: get_words<uint64_t>(x.opmask_reg(), dst, cf.bytes); break;
        case 6: get_words<uint64_t>(x.zmm_upper(), dst, cf.bytes); break;
        case 7: get_words<uint64_t>(x.hi16_zmm(), dst, cf.bytes); break;
        case 9: get_words<uint32_t>(x.pkru(), dst, cf.bytes); break;
      }
      bv |= uint64_t(1) << cf.index;
    }
    bv &= x.xstate_bv() | 0x3;
  }
  // Standard (non-compacted) format: XSTATE_BV set, XCOMP_BV zero.
  memcpy(xs.bytes.data() + kXsaveHeader, &bv, 8);
  memset(xs.bytes.data() + kXsaveHeader + 8, 0, 8);
  return {};
}

Status tls_to_image(pid_t tid, thread_info_x86& out) {
  out.clear_tls();
  for (int i = 0; i < kTlsEntries; i++) {
    user_desc d{};
    if (ptrace(PTRACE_GET_THREAD_AREA, tid, kTlsFirstEntry + i, &d) < 0)
      return fail(sys_error("ptrace(PTRACE_GET_THREAD_AREA)", "thread " + std::to_string(tid)));
    user_desc_t* t = out.add_tls();
    t->set_entry_number(d.entry_number);
    t->set_base_addr(d.base_addr);
    t->set_limit(d.limit);
    t->set_seg_32bit(d.seg_32bit);
    t->set_contents_h(d.contents & 2);
    t->set_contents_l(d.contents & 1);
    t->set_read_exec_only(d.read_exec_only);
    t->set_limit_in_pages(d.limit_in_pages);
    t->set_seg_not_present(d.seg_not_present);
    t->set_usable(d.useable);
  }
  return {};
}

Status tls_from_image(pid_t tid, const thread_info_x86& in) {
  for (const auto& t : in.tls()) {
    if (t.seg_not_present() && t.base_addr() == 0) continue;  // an empty slot, as a new thread has
    user_desc d{};
    d.entry_number = t.entry_number();
    d.base_addr = t.base_addr();
    d.limit = t.limit();
    d.seg_32bit = t.seg_32bit();
    d.contents = (t.contents_h() ? 2 : 0) | (t.contents_l() ? 1 : 0);
    d.read_exec_only = t.read_exec_only();
    d.limit_in_pages = t.limit_in_pages();
    d.seg_not_present = t.seg_not_present();
    d.useable = t.usable();
    if (ptrace(PTRACE_SET_THREAD_AREA, tid, t.entry_number(), &d) < 0)
      return fail(sys_error("ptrace(PTRACE_SET_THREAD_AREA)", "thread " + std::to_string(tid)));
  }
  return {};
}

}  // namespace crshim::arch

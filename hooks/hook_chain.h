// Fans one hook point out to several sinks in a fixed order, stopping at the first failure.
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <vector>

#include "checkpoint/hook_points.h"

namespace crshim {

// CRIU's order is the RPC notification first, then the shell action scripts; callers add sinks in
// that order. Sinks are borrowed and must outlive the chain.
class HookChain final : public Hooks {
 public:
  HookChain() = default;
  HookChain(std::initializer_list<Hooks*> sinks) : sinks_(sinks) {}

  void add(Hooks& sink) { sinks_.push_back(&sink); }
  size_t size() const { return sinks_.size(); }

  Status fire(HookPoint point, pid_t pid) override;
  Status fire_fd(HookPoint point, pid_t pid, int fd) override;
  // The first sink that can ask answers.
  bool can_request_fd() const override;
  Result<UniqueFd> request_fd(const std::string& key) override;

 private:
  std::vector<Hooks*> sinks_;
};

}  // namespace crshim

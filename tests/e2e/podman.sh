#!/bin/bash
# podman (runtime runc, conmon) drives crshim found as `criu` on PATH: `container checkpoint --export` of a
# busybox ticker, then `container restore --import` of the archive; the ticker goes on where it stopped.
# The podman state lives in the test's work dir (own storage root, vfs driver), no registry is needed.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

command -v podman >/dev/null || fail "podman is not installed"
mkdir -p "$WORK/bin" "$WORK/tmp"
ln -s "$CRSHIM" "$WORK/bin/criu"
export PATH=$WORK/bin:$PATH
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/runroot" --tmpdir "$WORK/tmp" --storage-driver vfs
  --runtime runc --cgroup-manager cgroupfs --events-backend file)
IMAGE=localhost/crshim-e2e-busybox:latest
NAME=crshim-e2e-pod-$$
e2e_teardown() { "${PODMAN[@]}" rm -f -t 0 "$NAME"; }

[[ "$(criu --version 2>&1)" == *"Version:"* ]] || fail "criu on PATH is not crshim: $(criu --version 2>&1)"
# shellcheck disable=SC2119 # no config edits
make_bundle
tar -C "$BUNDLE/rootfs" -c . | "${PODMAN[@]}" import - "$IMAGE" >"$WORK/import.out" 2>&1 ||
  fail "podman import failed: $(cat "$WORK/import.out")"

# Lower ulimits: podman's defaults make runc create fail with EPERM here. podman's default seccomp
# profile stays on: it comes back before the capabilities are dropped.
"${PODMAN[@]}" run -d --name "$NAME" --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
  "$IMAGE" sh -c "$TICKER" >"$WORK/run.out" 2>&1 ||
  fail "podman run failed: $(cat "$WORK/run.out")"
logs() { "${PODMAN[@]}" logs "$NAME" 2>&1; }
for ((i = 0; i < 100; i++)); do (($(logs | wc -l) >= 3)) && break; sleep 0.1; done
(($(logs | wc -l) >= 3)) || fail "the container does not tick: $(logs | tail -3)"

"${PODMAN[@]}" container checkpoint --export "$WORK/ckpt.tar.gz" "$NAME" >"$WORK/cp.out" 2>&1 ||
  fail "podman container checkpoint failed: $(cat "$WORK/cp.out")"
[[ "$("${PODMAN[@]}" inspect --format '{{.State.Status}}' "$NAME")" == exited ]] || fail "the container still runs after checkpoint"
last=$(logs | tail -1)
[[ "$last" =~ ^[0-9]+$ ]] || fail "unexpected ticker output '$last'"
[[ -s "$WORK/ckpt.tar.gz" ]] || fail "no checkpoint archive"
echo "ok: podman container checkpoint --export, ticker stopped at $last"

"${PODMAN[@]}" rm -f "$NAME" >/dev/null || fail "podman rm failed"
"${PODMAN[@]}" container restore --import "$WORK/ckpt.tar.gz" >"$WORK/rs.out" 2>&1 ||
  fail "podman container restore --import failed: $(cat "$WORK/rs.out")"
[[ "$("${PODMAN[@]}" inspect --format '{{.State.Status}} {{.State.Restored}}' "$NAME")" == "running true" ]] ||
  fail "the imported container is not running restored: $("${PODMAN[@]}" inspect --format '{{.State.Status}} {{.State.Restored}}' "$NAME")"
for ((i = 0; i < 100; i++)); do (($(logs | tail -1) >= last + 3)) && break; sleep 0.1; done
(($(logs | tail -1) >= last + 3)) || fail "the restored ticker does not go on from $last: $(logs | tail -3 | tr '\n' ' ')"
# The archive brings the old log back; the count must never have restarted.
[[ "$(logs | grep -c '^1$')" == 1 ]] || fail "the ticker restarted from 1 instead of being restored"
[[ "$(logs | grep -A1 "^$last\$" | tail -1)" == $((last + 1)) ]] || fail "the restored ticker did not print $((last + 1)) after $last"
pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$NAME")
[[ "$(cat "/proc/$(ppid_of "$pid")/comm")" == conmon ]] || fail "restored init $pid is not conmon's child"
grep -q "^Seccomp:[[:space:]]*2$" "/proc/$pid/status" || fail "the restored init lost podman's seccomp filter"
echo "ok: podman container restore --import, ticker went on from $last, init $pid under conmon"

#!/bin/bash
# containerd (ctr, containerd-shim-runc-v2, runc) drives crshim found as `criu` on PATH: a private
# containerd runs a busybox ticker with a host directory bind-mounted; `ctr containers checkpoint --task`
# (containerd pauses the task first: its frozen freezer cgroup is thawed and frozen again) stores the
# checkpoint as an image; after the container is removed, `ctr containers restore --live` brings it back
# and the count goes on from the checkpoint instead of starting over.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

command -v containerd >/dev/null && command -v ctr >/dev/null || fail "containerd is not installed"
mkdir -p "$WORK/bin" "$WORK/ctrd" "$WORK/data"
ln -s "$CRSHIM" "$WORK/bin/criu"
SOCK=$WORK/ctrd/sock
CTR=(ctr -a "$SOCK" -n crshim-e2e)
NAME=tick-$$
cat >"$WORK/ctrd/config.toml" <<TOML
version = 2
root = "$WORK/ctrd/root"
state = "$WORK/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
TOML
PATH=$WORK/bin:$PATH setsid containerd --config "$WORK/ctrd/config.toml" >"$WORK/ctrd/log" 2>&1 &
E2E_PIDS+=($!)
e2e_teardown() {
  "${CTR[@]}" task kill -s KILL "$NAME"
  sleep 0.3
  "${CTR[@]}" task rm -f "$NAME"
  "${CTR[@]}" container rm "$NAME"
}
for ((i = 0; i < 100; i++)); do [[ -S $SOCK ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || fail "containerd did not start: $(tail -3 "$WORK/ctrd/log")"

# shellcheck disable=SC2119 # no config edits
make_bundle
python3 "$SRC/tests/e2e/oci_image.py" "$BUNDLE/rootfs" localhost/crshim-e2e:1 "$WORK/image.tar" ||
  fail "cannot build the image archive"
"${CTR[@]}" image import "$WORK/image.tar" >"$WORK/import.out" 2>&1 || fail "ctr image import failed: $(cat "$WORK/import.out")"

# shellcheck disable=SC2016 # expanded by the container's shell
"${CTR[@]}" run -d --net-host --mount "type=bind,src=$WORK/data,dst=/data,options=rbind:rw" localhost/crshim-e2e:1 "$NAME" \
  sh -c 'i=0; while :; do i=$((i + 1)); echo $i >>/data/count; sleep 0.2; done' >"$WORK/run.out" 2>&1 ||
  fail "ctr run failed: $(cat "$WORK/run.out")"
count() { tail -1 "$WORK/data/count" 2>/dev/null || echo 0; }
for ((i = 0; i < 100; i++)); do (($(count) >= 3)) && break; sleep 0.05; done
(($(count) >= 3)) || fail "the container does not count"

"${CTR[@]}" containers checkpoint --task "$NAME" localhost/crshim-ckpt:1 >"$WORK/ckpt.out" 2>&1 ||
  fail "ctr containers checkpoint failed: $(cat "$WORK/ckpt.out") $(tail -5 "$WORK/ctrd/log")"
at=$(count)
"${CTR[@]}" task ls | grep -q "^$NAME .*RUNNING" || fail "the task does not run on after the checkpoint: $("${CTR[@]}" task ls)"
echo "ok: ctr containers checkpoint --task of a running container (count $at), which runs on"

e2e_teardown >/dev/null 2>&1
last=$(count)
"${CTR[@]}" containers restore --live "$NAME" localhost/crshim-ckpt:1 >"$WORK/restore.out" 2>&1 ||
  fail "ctr containers restore failed: $(cat "$WORK/restore.out") $(tail -5 "$WORK/ctrd/log")"
"${CTR[@]}" task ls | grep -q "^$NAME .*RUNNING" || fail "the restored task does not run: $("${CTR[@]}" task ls)"
for ((i = 0; i < 100; i++)); do (($(count) >= last + 3)) && break; sleep 0.05; done
(($(count) >= last + 3)) || fail "the restored container does not count on from $last: $(tail -3 "$WORK/data/count" | tr '\n' ' ')"
[[ "$(grep -c '^1$' "$WORK/data/count")" == 1 ]] || fail "the count started over instead of being restored"
echo "ok: ctr containers restore --live: the count went on from the checkpoint (now $(count))"

#!/bin/bash
# An archive crshim's bundle mode exports (`checkpoint --bundle --export`) is one podman imports: a busybox
# program run by runc on an overlay over the image's files writes a file and deletes one, is checkpointed
# by crshim with --export; `podman container restore --import` (runtime runc, crshim as `criu` on PATH)
# recreates it from config.dump on that image, applies rootfs-diff.tar and deleted.files, and the program
# goes on under conmon, seeing its changes. The podman state lives in the test's work dir (own storage
# root, vfs driver); the image is `podman import`ed from the rootfs, no registry is needed.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

command -v podman >/dev/null || fail "podman is not installed"
mkdir -p "$WORK/bin" "$WORK/tmp"
ln -s "$CRSHIM" "$WORK/bin/criu"
export PATH=$WORK/bin:$PATH
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/runroot" --tmpdir "$WORK/tmp" --storage-driver vfs
  --runtime runc --cgroup-manager cgroupfs --events-backend file)
IMAGE=localhost/crshim-e2e-import:latest
NAME=crshim-e2e-import-$$
e2e_teardown() {
  "${PODMAN[@]}" rm -f -t 0 "$NAME"
  "${PODMAN[@]}" rmi -f "$IMAGE"
}
[[ "$(criu --version 2>&1)" == *"Version:"* ]] || fail "criu on PATH is not crshim: $(criu --version 2>&1)"

# The bundle names the image and the container's podman name; its program changes its rootfs.
# shellcheck disable=SC2016 # expanded by the container's shell
PROGRAM='echo mine > /etc/written; rm /etc/motd; i=0; while true; do i=$((i+1)); echo "$i $(cat /etc/written) $(cat /etc/motd 2>/dev/null || echo nomotd)"; sleep 0.2; done'
# shellcheck disable=SC2119 # no config edits
make_bundle
python3 - "$BUNDLE/config.json" "$PROGRAM" "$IMAGE" "$NAME" <<'PY'
import json, sys
p, program, image, name = sys.argv[1:]
c = json.load(open(p))
c["process"]["args"] = ["sh", "-c", program]
c["root"]["readonly"] = False  # the program writes to its rootfs
c.setdefault("annotations", {}).update({"io.crshim.export.image": image, "io.crshim.export.name": name})
json.dump(c, open(p, "w"), indent=2)
PY
LOWER=$WORK/lower
mv "$BUNDLE/rootfs" "$LOWER"
ln -s busybox "$LOWER/bin/rm"
echo lower >"$LOWER/etc/motd"
tar -C "$LOWER" -c . | "${PODMAN[@]}" import - "$IMAGE" >"$WORK/import.out" 2>&1 ||
  fail "podman import failed: $(cat "$WORK/import.out")"
mkdir -p "$BUNDLE/rootfs" "$WORK/up" "$WORK/wk"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$WORK/up,workdir=$WORK/wk" "$BUNDLE/rootfs" ||
  fail "cannot mount an overlay on $BUNDLE/rootfs"

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
[[ "$(sed -n 3p "$WORK/out1")" == "3 mine nomotd" ]] || fail "the program printed '$(sed -n 3p "$WORK/out1")'"
pid=$(container_pid)
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w1" --export "$WORK/ckpt.tar.zst" \
  -v4 "$pid" || fail "checkpoint --export failed: $(engine_log "$WORK/w1")"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
umount "$BUNDLE/rootfs" || fail "umount of the overlay failed"
listing=$(tar -tf "$WORK/ckpt.tar.zst") || fail "ckpt.tar.zst is not a tar"
for want in config.dump spec.dump checkpoint/descriptors.json rootfs-diff.tar deleted.files; do
  grep -qx "$want" <<<"$listing" || fail "the archive has no $want: $listing"
done
config=$(tar -xOf "$WORK/ckpt.tar.zst" config.dump)
python3 - "$config" "$IMAGE" "$NAME" <<'PY' || fail "unexpected config.dump: $config"
import json, re, sys
c, image, name = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert re.fullmatch("[0-9a-f]{64}", c["id"]), c["id"]
assert (c["name"], c["rootfsImageName"], c["runtime"]) == (name, image, "runc"), c
PY
grep -q "Wrote config.dump for podman: container [0-9a-f]\{64\}" "$WORK/w1/dump.log" ||
  fail "dump.log does not report config.dump"
last=$(tail -1 "$WORK/out1" | cut -d' ' -f1)
[[ "$last" =~ ^[0-9]+$ ]] || fail "unexpected program output '$(tail -1 "$WORK/out1")'"
echo "ok: checkpoint --export wrote config.dump (image $IMAGE, name $NAME), the program stopped at $last"

"${PODMAN[@]}" container restore --import "$WORK/ckpt.tar.zst" >"$WORK/rs.out" 2>&1 ||
  fail "podman container restore --import failed: $(cat "$WORK/rs.out")"
state() { "${PODMAN[@]}" inspect --format '{{.State.Status}} {{.State.Restored}} {{.ImageName}}' "$NAME" 2>&1; }
[[ "$(state)" == "running true $IMAGE" ]] || fail "the imported container is not running restored on $IMAGE: $(state)"
logs() { "${PODMAN[@]}" logs "$NAME" 2>&1; }
for ((i = 0; i < 100; i++)); do (($(logs | wc -l) >= 3)) && break; sleep 0.1; done
# The restored program goes on from where it stopped and sees its rootfs changes in podman's rootfs.
[[ "$(logs | sed -n 1p)" == "$((last + 1)) mine nomotd" ]] ||
  fail "the restored program printed '$(logs | sed -n 1p)' first, expected '$((last + 1)) mine nomotd'"
[[ "$(logs | sed -n 3p)" == "$((last + 3)) mine nomotd" ]] || fail "the restored program does not go on: $(logs | tail -3 | tr '\n' ' ')"
pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$NAME")
[[ "$(cat "/proc/$(ppid_of "$pid")/comm")" == conmon ]] || fail "restored init $pid is not conmon's child"
echo "ok: podman container restore --import of crshim's archive: the program went on from $last with its rootfs changes, init $pid under conmon"

"${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null || fail "podman rm -f of the restored container failed"
for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the restored init $pid still runs after podman rm -f"
"${PODMAN[@]}" rmi "$IMAGE" >/dev/null || fail "podman rmi failed"
echo "ok: podman rm -f and rmi clean the restored container and its image up"

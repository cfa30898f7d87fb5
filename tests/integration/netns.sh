#!/bin/bash
# A tree in its own network namespace: refused without a mode; external (--external net[INO]:KEY at
# dump, --inherit-fd fd[N]:KEY at restore) comes back in that very namespace; empty (--empty-ns net)
# comes back in a new namespace whose only link is lo, up.
source "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"

NS=crshim-test-$$
ip netns add "$NS" || fail "ip netns add"
at_exit 'ip netns del "$NS" 2>/dev/null'
ns_ino=$(stat -L -c %i "/run/netns/$NS")

# nsenter joins only the network namespace (`ip netns exec` would add a mount namespace too).
start_in_netns() {
  READY=$WORK/$1.ready RESULT=$WORK/$1.result
  setsid nsenter "--net=/run/netns/$NS" "$PROGRAMS/tp_memory" "$READY" "$RESULT" </dev/null >"$WORK/$1.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  [[ $(stat -L -c %i "/proc/$TARGET_PID/ns/net") == "$ns_ino" ]] || fail "target not started in $NS"
}

# 1. Neither mode, with a link that cannot be dumped (a bridge): refused before freezing, naming the
# link and the options; the target runs on. (A namespace of lo and veths is dumped: netns_full.sh.)
ip -n "$NS" link add crbr0 type bridge || fail "ip link add bridge in $NS"
start_in_netns plain
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" 2>"$WORK/err"; then fail "a private netns was dumped"; fi
grep -q "own net namespace" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -q "link crbr0 (kind bridge)" "$WORK/err" || fail "the link is not named: $(cat "$WORK/err")"
grep -q -- "--external net\[$ns_ino\]:KEY or --empty-ns net" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
finish_and_check
reap_target
ip -n "$NS" link del crbr0
echo "ok: own netns with a bridge, without --external/--empty-ns, refused; target untouched"

# 2. External: the image records the key; restore joins the namespace given as an inherited fd.
start_in_netns ext
checkpoint "$WORK/ext" --external "net[$ns_ino]:extNet"
decode_all "$WORK/ext"
netns_img=$(ls "$WORK"/ext/netns-*.img 2>/dev/null | head -1)
[[ -n "$netns_img" ]] || fail "no netns image for the external namespace"
crit decode -i "$netns_img" | grep -q '"ext_key": "extNet"' || fail "netns image lacks ext_key: $(crit decode -i "$netns_img")"
reap_target
if "$CRSHIM" restore -D "$WORK/ext" -d -o restore-nofd.log 2>"$WORK/err"; then fail "restored without the external netns fd"; fi
grep -q "fd\[N\]:extNet" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "a task was left behind by the refused restore"; fi
exec 7<"/run/netns/$NS"
restore_detached "$WORK/ext" --inherit-fd "fd[7]:extNet"
exec 7<&-
got=$(stat -L -c %i "/proc/$TARGET_PID/ns/net")
[[ "$got" == "$ns_ino" ]] || fail "restored task is in netns $got, expected $ns_ino"
finish_and_check
echo "ok: external netns (inode $ns_ino) recorded with its key and joined again through --inherit-fd"

# 3. Empty: dumped without its namespace; restored into a fresh one with only lo, up.
READY=$WORK/empty.ready RESULT=$WORK/empty.result
setsid unshare --net "$PROGRAMS/tp_memory" "$READY" "$RESULT" </dev/null >"$WORK/empty.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
# A namespace made by unshare has lo down: finding it up after restore shows we brought it up.
nsenter -t "$TARGET_PID" -n ip -o link show lo | grep -q "state DOWN" || fail "lo of a fresh unshare netns is not down"
checkpoint "$WORK/empty" --empty-ns net
decode_all "$WORK/empty"
if ls "$WORK"/empty/netns-*.img >/dev/null 2>&1; then fail "an empty-mode dump wrote a netns image"; fi
reap_target
restore_detached "$WORK/empty" --empty-ns net
new_ino=$(stat -L -c %i "/proc/$TARGET_PID/ns/net")
[[ "$new_ino" != "$(stat -L -c %i /proc/self/ns/net)" ]] || fail "restored into our own netns"
[[ "$new_ino" != "$ns_ino" ]] || fail "restored into $NS"  # (the dumped one's inode may be reused: it is gone)
links=$(nsenter -t "$TARGET_PID" -n ip -o link show)
[[ $(wc -l <<<"$links") == 1 ]] || fail "links in the new netns: $links"
grep -Eq '^1: lo: <([A-Z_]+,)*UP[,>]' <<<"$links" || fail "lo is not up: $links"
finish_and_check
echo "ok: --empty-ns net: new netns (inode $new_ino) with only lo, up"

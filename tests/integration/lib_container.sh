#!/bin/bash
# Shared by the tests that build a container by hand: a busybox rootfs, the mount list a task sees,
# what a test may have left on the host, the tasks living in a root, a counter's writes. Source after
# lib.sh.

# make_rootfs DIR: busybox, its applets, and the directories the container mounts on.
make_rootfs() {
  local dir=$1 applet
  mkdir -p "$dir"/{bin,proc,sys,dev,tmp,data,etc,mnt/ro}
  cp /bin/busybox "$dir/bin/busybox"
  for applet in sh mount umount mkdir sleep cat echo pivot_root; do ln -s busybox "$dir/bin/$applet"; done
  echo "motd of the rootfs" >"$dir/etc/motd"
}

# mounts PID: "mountpoint fstype per-mount-options" of every mount the task sees, sorted.
mounts() {
  awk '{ for (i = 7; $i != "-"; i++) ; print $5, $(i + 1), $6 }' "/proc/$1/mountinfo" | sort
}

# leftovers: what the host mount table holds of this test, and any yard still on disk.
leftovers() {
  grep -e "$WORK" -e crshim-yard /proc/self/mountinfo || true
  ls -d /tmp/crshim-yard-* 2>/dev/null || true
}

# tasks_in ROOT: pids of processes whose root directory is ROOT's inode.
tasks_in() {
  local want p
  want=$(stat -c %d:%i "$1")
  for p in /proc/[0-9]*; do
    [[ "$(stat -c %d:%i "$p/root/" 2>/dev/null)" == "$want" ]] && echo "${p#/proc/}"
  done
  true
}

# just_written FILE: returns right after the container wrote its counter into FILE, so that it sleeps
# through the dump instead of holding the file open (files are reopened by path at restore).
just_written() {
  local c n
  c=$(cat "$1" 2>/dev/null || echo 0)
  for _ in $(seq 200); do
    n=$(cat "$1" 2>/dev/null || true)
    # Empty: truncated and not written yet. Then a moment for the close; the next write is 0.4 s away.
    if [[ -n "$n" && "$n" != "$c" ]]; then sleep 0.05; return 0; fi
    sleep 0.01
  done
  fail "the counter in $1 does not change"
}

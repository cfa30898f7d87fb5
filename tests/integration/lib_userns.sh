# Tests of trees in a user namespace of their own (in_userns.py: 0 inside = 100000 outside). Source
# after lib.sh with the programs to run in USERNS_PROGRAMS: they are copied into the work dir, since
# their uid may not enter the checkout (a clone in a 0700 directory), and PROGRAMS points there.
chmod 0777 "$WORK"  # the programs write their ready and result files as an unprivileged uid
mkdir -p "$WORK/programs"
for p in "${USERNS_PROGRAMS[@]}"; do cp "$PROGRAMS/$p" "$WORK/programs/"; done
PROGRAMS=$WORK/programs

# in_userns "NS..." LOG CMD...: in_userns.py in the background, its output in LOG; sets LAUNCHER.
# CMD runs in $USERNS_CWD (default: the work dir).
in_userns() {
  local namespaces=$1 log=$2 launcher
  launcher=$(realpath "$(dirname "${BASH_SOURCE[0]}")/in_userns.py")
  shift 2
  (cd "${USERNS_CWD:-$WORK}" && exec setsid python3 "$launcher" "$namespaces" "$@" </dev/null >>"$log" 2>&1) &
  LAUNCHER=$!
}

# The task in_userns started (the launcher's grandchild).
userns_task() {
  local unsharer
  unsharer=$(pgrep -P "$LAUNCHER") && pgrep -P "$unsharer"
}

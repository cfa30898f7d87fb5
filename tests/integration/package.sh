#!/bin/bash
# The Debian package: packaging/build-deb packages the tested build, the .deb is unpacked into a
# throwaway root (never installed system-wide) and every shipped file is checked where it lands:
# the binary and its criu entry point run, the man page is roff, the control data is complete, the
# service command line and the example config work, the completion knows every option, lintian
# reports no error.
# `check && ok || fail` is meant throughout: ok only prints and never fails.
# shellcheck disable=SC2015
set -euo pipefail

SRC=${SRC:?SRC must point at the source tree}
CRSHIM=${CRSHIM:?CRSHIM must point at the built crshim}
BUILD=$(cd "$(dirname "$CRSHIM")" && pwd)

T=$(mktemp -d /tmp/crshim-package.XXXXXX)
SERVICE_PID=
cleanup() {
  [[ -n $SERVICE_PID ]] && kill -9 "$SERVICE_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

VERSION=$(sed -n 's/^project(crshim VERSION \([0-9][0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[[ -n $VERSION ]] || { echo "FAIL: no version in $SRC/CMakeLists.txt"; exit 1; }

# Package the build under test (a full Release build takes minutes; build-deb does that by default).
if ! "$SRC/packaging/build-deb" --build-dir "$BUILD" --no-build --no-lintian --out "$T/out" >"$T/build-deb.log" 2>&1; then
  cat "$T/build-deb.log"
  echo "FAIL: packaging/build-deb"
  exit 1
fi
shopt -s nullglob
debs=("$T"/out/crshim_*.deb)
((${#debs[@]} == 1)) || { echo "FAIL: expected one .deb, got: ${debs[*]:-none}"; exit 1; }
DEB=${debs[0]}
ARCH=$(dpkg --print-architecture)
[[ $(basename "$DEB") == "crshim_${VERSION}-1_${ARCH}.deb" ]] && ok "file name $(basename "$DEB")" ||
  fail "file name $(basename "$DEB"), expected crshim_${VERSION}-1_${ARCH}.deb"

ROOT=$T/root
dpkg -x "$DEB" "$ROOT"
mkdir -p "$T/control"
dpkg-deb -e "$DEB" "$T/control"

# --- files where they belong ---
for f in usr/sbin/crshim etc/crshim/default.conf usr/share/man/man8/crshim.8.gz \
  usr/share/bash-completion/completions/crshim lib/systemd/system/crshim.service \
  usr/share/doc/crshim/copyright usr/share/doc/crshim/changelog.Debian.gz; do
  [[ -f $ROOT/$f && ! -L $ROOT/$f ]] && ok "/$f" || fail "/$f missing or not a regular file"
done
[[ -x $ROOT/usr/sbin/crshim ]] || fail "/usr/sbin/crshim is not executable"
[[ -L $ROOT/usr/lib/crshim/criu && $(readlink "$ROOT/usr/lib/crshim/criu") == ../../sbin/crshim ]] &&
  ok "/usr/lib/crshim/criu -> ../../sbin/crshim" || fail "/usr/lib/crshim/criu is $(readlink "$ROOT/usr/lib/crshim/criu" || echo missing)"
# Never take over a distribution's criu, and no socket unit: crshim service does not do activation.
for f in usr/sbin/criu usr/bin/criu sbin/criu lib/systemd/system/crshim.socket; do
  [[ -e $ROOT/$f || -L $ROOT/$f ]] && fail "/$f must not be shipped"
done
file_out=$(file -b "$ROOT/usr/sbin/crshim" 2>/dev/null || true)
if [[ -n $file_out ]]; then
  [[ $file_out == *ELF* && $file_out == *stripped* && $file_out != *"not stripped"* ]] && ok "binary is a stripped ELF" ||
    fail "binary: $file_out"
fi
(cd "$ROOT" && md5sum -c --quiet "$T/control/md5sums") && ok "md5sums match" || fail "md5sums do not match the files"
[[ $(cat "$T/control/conffiles") == /etc/crshim/default.conf ]] && ok "conffiles" ||
  fail "conffiles: $(cat "$T/control/conffiles")"

# --- the installed binary ---
out=$("$ROOT/usr/sbin/crshim" check 2>&1) && [[ $out == *"Looks good."* ]] && ok "crshim check" ||
  fail "crshim check: $out"
out=$("$ROOT/usr/sbin/crshim" --version 2>&1) && [[ $out == "Version: $VERSION" ]] && ok "crshim --version" ||
  fail "crshim --version: '$out', expected 'Version: $VERSION'"
out=$("$ROOT/usr/lib/crshim/criu" --version 2>&1) && [[ $out == "Version: $VERSION" ]] && ok "criu --version through the link" ||
  fail "/usr/lib/crshim/criu --version: '$out'"
out=$("$ROOT/usr/lib/crshim/criu" help dump 2>&1) && [[ $out == *"--tree PID"* ]] && ok "criu help dump through the link" ||
  fail "/usr/lib/crshim/criu help dump: '$out'"
"$ROOT/usr/sbin/crshim" features >"$T/features.json"
python3 - "$T/features.json" "$VERSION" <<'EOF' && ok "features JSON" || fail "features JSON (see above)"
import json, sys
f = json.load(open(sys.argv[1]))
assert f["version"] == sys.argv[2], f["version"]
assert f["org.opencontainers.runc.checkpoint.enabled"] is True
assert f["usable"] is True
EOF

# --- man page: gzip'ed roff that man renders without complaint ---
# (Whole files into variables: with pipefail, `zcat | grep -q` fails when grep stops reading early.)
if gzip -t "$ROOT/usr/share/man/man8/crshim.8.gz"; then
  roff=$(zcat "$ROOT/usr/share/man/man8/crshim.8.gz")
  grep -q "^\.TH CRSHIM 8 .*\"crshim $VERSION\"" <<<"${roff:0:400}" && ok "man page is gzip'ed roff" ||
    fail "man page starts with: ${roff:0:200}"
else
  fail "man page is not gzip'ed"
fi
if command -v man >/dev/null; then
  warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$ROOT/usr/share/man/man8/crshim.8.gz" 2>&1 >"$T/man.txt") || true
  [[ -z $warn ]] || fail "man warnings: $warn"
  grep -q "CONFIGURATION FILES" "$T/man.txt" && grep -q -- "--leave-running" "$T/man.txt" && ok "man renders" ||
    fail "rendered man page lacks its sections"
fi

# --- control data ---
declare -A want=([Package]=crshim [Version]="$VERSION-1" [Architecture]="$ARCH" [Section]=admin [Priority]=optional)
for k in "${!want[@]}"; do
  v=$(dpkg-deb -f "$DEB" "$k")
  [[ $v == "${want[$k]}" ]] || fail "control $k: '$v', expected '${want[$k]}'"
done
deps=$(dpkg-deb -f "$DEB" Depends)
for lib in libc6 libprotobuf32 libstdc++6; do
  [[ $deps == *"$lib"* ]] || fail "Depends lacks $lib: $deps"
done
[[ -n $(dpkg-deb -f "$DEB" Maintainer) && -n $(dpkg-deb -f "$DEB" Installed-Size) ]] || fail "Maintainer/Installed-Size empty"
[[ $(dpkg-deb -f "$DEB" Description) == *"checkpoint/restore"* ]] && ok "control fields" || fail "no Description"
info=$(dpkg-deb -I "$DEB")
[[ $info == *" Package: crshim"* && $info == *" Depends: "* ]] || fail "dpkg-deb -I: $info"
changelog=$(zcat "$ROOT/usr/share/doc/crshim/changelog.Debian.gz")
[[ $changelog == "crshim ($VERSION-1) "* ]] || fail "changelog starts with: ${changelog%%$'\n'*}"

# --- the service, as the unit starts it, with the unit's config file ---
unit=$ROOT/lib/systemd/system/crshim.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $exec_start == "/usr/sbin/crshim service --address /run/crshim/crshim.socket" ]] && ok "ExecStart" ||
  fail "ExecStart=$exec_start"
grep -q '^Environment=CRIU_CONFIG_FILE=/etc/crshim/default.conf$' "$unit" || fail "unit does not name the config file"
grep -q '^RuntimeDirectory=crshim$' "$unit" || fail "unit does not create /run/crshim"
if command -v systemd-analyze >/dev/null; then
  # The unit as systemd parses it, with the binary taken from the unpacked root.
  sed "s|/usr/sbin/crshim|$ROOT/usr/sbin/crshim|" "$unit" >"$T/crshim.service"
  out=$(systemd-analyze verify --man=no "$T/crshim.service" 2>&1) && ok "systemd-analyze verify" ||
    fail "systemd-analyze verify: $out"
fi
read -r -a argv <<<"$exec_start"
argv[0]=$ROOT${argv[0]}
argv[3]=$T/crshim.socket
CRIU_CONFIG_FILE=$ROOT/etc/crshim/default.conf "${argv[@]}" >"$T/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 100); do
  [[ -S $T/crshim.socket ]] && break
  sleep 0.05
done
if [[ -S $T/crshim.socket ]]; then
  kill -TERM "$SERVICE_PID"
  if wait "$SERVICE_PID"; then ok "service listens and stops on SIGTERM"; else fail "service exit status $?"; fi
  [[ -e $T/crshim.socket ]] && fail "service left its socket behind"
else
  fail "service did not listen: $(cat "$T/service.log")"
fi
SERVICE_PID=

# --- the example config: every commented-out example is a valid setting ---
sed -n 's/^#\([a-z][a-z-]* \{0,1\}.*\)$/\1/p' "$ROOT/etc/crshim/default.conf" >"$T/examples.conf"
n=$(grep -c . "$T/examples.conf" || true)
((n >= 4)) || fail "only $n examples in default.conf"
out=$("$ROOT/usr/sbin/crshim" --no-default-config --config "$T/examples.conf" check 2>&1) && ok "$n config examples parse" ||
  fail "config examples: $out"

# --- bash completion: every option and command of shim/options.cc ---
comp=$ROOT/usr/share/bash-completion/completions/crshim
bash -n "$comp" || fail "completion has syntax errors"
opts=$(sed -n '/^const std::vector<OptionSpec>& option_table/,/^}/p' "$SRC/shim/options.cc" |
  grep -oE '(custom|flag|str|list|bundle)\("[a-z0-9-]+"' | sed 's/.*("//; s/"$//' || true)
verbs=$(sed -n '/^std::string_view verb_name/,/^}/p' "$SRC/shim/options.cc" | grep -oE 'return "[a-z-]+"' | sed 's/return "//; s/"//' || true)
(($(wc -w <<<"$opts") > 80)) || fail "found only $(wc -w <<<"$opts") options in shim/options.cc"
(($(wc -w <<<"$verbs") > 10)) || fail "found only $(wc -w <<<"$verbs") commands in shim/options.cc"
missing=()
for o in $opts; do grep -qE -- "(^|[ \"])--$o( |\"|$)" "$comp" || missing+=("--$o"); done
commands=" $(sed -n '/local commands="/,/"$/p' "$comp" | tr -d '"\n' | sed 's/.*commands=//') "
for v in $verbs; do [[ $commands == *" $v "* ]] || missing+=("$v"); done
((${#missing[@]} == 0)) && ok "completion knows $(wc -w <<<"$opts") options and $(wc -w <<<"$verbs") commands" ||
  fail "completion lacks: ${missing[*]}"
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
  got=$(bash -c '
    source /usr/share/bash-completion/bash_completion; source "$1"
    complete_line() { COMP_LINE=$1; COMP_POINT=${#1}; read -r -a COMP_WORDS <<<"$1"; [[ $1 == *" " ]] && COMP_WORDS+=("");
      COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _crshim; echo "${COMPREPLY[*]}"; }
    complete_line "crshim du"; complete_line "crshim dump --leave-r"; complete_line "crshim restore --log-format "
    complete_line "crshim help rest"' _ "$comp")
  [[ $got == $'dump\n--leave-running\ntext json\nrestore' ]] && ok "completion answers" ||
    fail "completion answers: $(tr '\n' '|' <<<"$got")"
fi

# --- lintian ---
if command -v lintian >/dev/null; then
  lintian "$DEB" >"$T/lintian.txt" 2>&1 || true
  if grep -q '^E: ' "$T/lintian.txt"; then
    fail "lintian errors:"
    grep '^E: ' "$T/lintian.txt"
  else
    ok "lintian: no errors ($(grep -c '^W: ' "$T/lintian.txt" || true) warnings)"
  fi
else
  echo "skip: lintian is not installed"
fi

if ((failures)); then
  echo "FAIL: $failures package checks failed"
  exit 1
fi
echo PASS

#!/bin/sh
# Builds the libFuzzer targets with clang (the engine instrumented too) into build-fuzz/ and runs each
# for SECONDS (default 60). Exits non-zero if any target finds a crash; inputs go to build-fuzz/artifacts/.
# Usage: run.sh [SECONDS [TARGET...]]; TARGET is a name of ALL_TARGETS below, with or without "fuzz_".
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
all="fuzz_image_reader fuzz_load_images fuzz_oci_config fuzz_rpc_request fuzz_criu_config fuzz_page_protocol"
targets=
for t in "$@"; do
  t=fuzz_${t#fuzz_}
  case " $all " in *" $t "*) targets="$targets $t" ;; *) echo "unknown fuzz target $t (have: $all)" >&2; exit 2 ;; esac
done
[ -n "$targets" ] || targets=$all
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${CRSHIM_FUZZ_BUILD:-$root/build-fuzz}
jobs=${CRSHIM_FUZZ_BUILD_JOBS:-2}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="$flags" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
# shellcheck disable=SC2086 # one word per target
cmake --build "$build" -j"$jobs" --target $targets

# Working corpora: the committed seeds, the fixture images, and seed sets written by the target itself.
corpus=$build/corpus
mkdir -p "$build/artifacts"
for t in $all; do
  mkdir -p "$corpus/${t#fuzz_}"
  cp "$root/tests/fuzz/corpus/${t#fuzz_}"/* "$corpus/${t#fuzz_}/" 2>/dev/null || true
done
for d in "$root"/tests/fixtures/criu-4.2/*/; do
  for f in "$d"*.img "$d"stats-dump; do
    case $(basename "$f") in pages-*|*.tar.gz.img) continue ;; esac
    [ -f "$f" ] && cp "$f" "$corpus/image_reader/$(basename "$d")-$(basename "$f")"
  done
done
case " $targets " in *" fuzz_load_images "*) CRSHIM_FUZZ_WRITE_SEEDS="$corpus/load_images" "$build/fuzz/fuzz_load_images" ;; esac
# Config files the machine has are seeds for the CRIU config parser.
cp /etc/criu/*.conf "$corpus/criu_config/" 2>/dev/null || true

status=0
run() {
  target=$1 max_len=$2
  echo "== $target for ${secs}s"
  if ! "$build/fuzz/$target" "$corpus/${target#fuzz_}" -max_total_time="$secs" -max_len="$max_len" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" \
      >"$build/$target.log" 2>&1; then
    echo "$target FAILED; see $build/$target.log and $build/artifacts/"
    tail -40 "$build/$target.log"
    status=1
  else
    grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$build/$target.log" || true
  fi
}
for t in $targets; do
  case $t in
    fuzz_load_images | fuzz_page_protocol) run "$t" 32768 ;;
    fuzz_oci_config) run "$t" 65536 ;;
    *) run "$t" 8192 ;;
  esac
done
exit $status

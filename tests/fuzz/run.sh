#!/bin/sh
# Builds the libFuzzer targets with clang (the engine instrumented too) into build-fuzz/ and runs each
# for SECONDS (default 60). Exits non-zero if any target finds a crash; inputs go to build-fuzz/artifacts/.
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${CRSHIM_FUZZ_BUILD:-$root/build-fuzz}
jobs=${CRSHIM_FUZZ_BUILD_JOBS:-2}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="$flags" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$jobs" --target fuzz_image_reader fuzz_load_images

# Working corpora: the committed seeds, the fixture images, and seed sets written by the target itself.
corpus=$build/corpus
mkdir -p "$corpus/image_reader" "$corpus/load_images" "$build/artifacts"
cp "$root"/tests/fuzz/corpus/image_reader/* "$corpus/image_reader/" 2>/dev/null || true
cp "$root"/tests/fuzz/corpus/load_images/* "$corpus/load_images/" 2>/dev/null || true
for d in "$root"/tests/fixtures/criu-4.2/*/; do
  for f in "$d"*.img "$d"stats-dump; do
    case $(basename "$f") in pages-*|*.tar.gz.img) continue ;; esac
    [ -f "$f" ] && cp "$f" "$corpus/image_reader/$(basename "$d")-$(basename "$f")"
  done
done
CRSHIM_FUZZ_WRITE_SEEDS="$corpus/load_images" "$build/fuzz/fuzz_load_images"

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
run fuzz_image_reader 8192
run fuzz_load_images 32768
exit $status

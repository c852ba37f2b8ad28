#!/bin/bash -eu
# Builds every fuzz target into $OUT and ships each committed corpus as
# $OUT/<target>_seed_corpus.zip (ClusterFuzzLite / OSS-Fuzz conventions).
#
# Inside the base-builder-rust image, $SRC, $OUT and $SANITIZER come from the
# image and cargo-fuzz builds with that sanitizer. Outside Docker it runs on
# stable with no sanitizer:
#
#   OUT=/tmp/cflite-out bash .clusterfuzzlite/build.sh
#
# ($SRC, if set, is the directory holding the packmodel checkout; by default
# the checkout this script sits in.)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${SRC:-}" ] && [ -d "$SRC/packmodel/fuzz" ]; then
    root="$SRC/packmodel"
else
    root="$here"
fi
: "${OUT:?set OUT to the directory that receives the fuzzers}"
mkdir -p "$OUT"
cd "$root/fuzz"

# The image sets SANITIZER (address, undefined, memory, coverage); outside it,
# or with "none", build without one, which works on stable.
# (Release is cargo-fuzz's default; the image's scripts pass -O as well.)
case "${SANITIZER:-none}" in
    none) flags=(-s none --no-trace-compares) ;;
    *) flags=(-O) ;;
esac
targets=$(cargo fuzz list)
cargo fuzz build "${flags[@]}"

built="$root/fuzz/target/x86_64-unknown-linux-gnu/release"
for t in $targets; do
    cp "$built/$t" "$OUT/$t"
    corpus="$root/corpus/$t"
    # The trace parser's seeds are the example traces.
    [ "$t" = trace_parser ] && corpus="$root/corpus/examples"
    if [ -d "$corpus" ]; then
        rm -f "$OUT/${t}_seed_corpus.zip"
        if command -v zip >/dev/null 2>&1; then
            (cd "$corpus" && zip -q -j "$OUT/${t}_seed_corpus.zip" ./*)
        else
            python3 -m zipfile -c "$OUT/${t}_seed_corpus.zip" "$corpus"/*
        fi
    fi
done
echo "built into $OUT: $(echo $targets)"

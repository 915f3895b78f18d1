#!/bin/sh
# Regenerates docs/bench.json, docs/bench.md and docs/bench.svg from the
# bench's current report model: one run of `pagebackup bench` with the
# backends docs/results.md describes, the full table as Markdown.
# Run it from anywhere in the repository, on a quiet machine; it honours
# CARGO_TARGET_DIR. Extra arguments go to the bench (such as --rounds 5).
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p pagebackup-cli
cargo run --release -q -p pagebackup-cli -- bench \
  --backend memory --backend shmem --backend file --backend file:io=sync \
  --backend file:direct=on --backend compressed \
  --backend compressed:algo=zstd,level=1 --threads 2 \
  --json docs/bench.json --svg docs/bench.svg --full --format md "$@" \
  > docs/bench.md.new
mv docs/bench.md.new docs/bench.md
echo "regenerated docs/bench.json, docs/bench.md and docs/bench.svg"

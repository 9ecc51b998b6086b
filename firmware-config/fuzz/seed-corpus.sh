#!/bin/sh
# Seeds the fuzz corpora from files already in the repository (nothing here is committed):
# - toml_to_plan: examples/*.toml and tests/bad-manifests/*.toml;
# - blob_decode: the boot blobs of examples/*.toml (see examples/seed_blobs.rs).
# Run from anywhere; uses CARGO_TARGET_DIR if set.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$here/corpus/toml_to_plan" "$here/corpus/blob_decode" "$here/corpus/blob_mutate"
cp "$repo"/examples/*.toml "$repo"/tests/bad-manifests/*.toml "$here/corpus/toml_to_plan/"
cd "$here"
cargo +nightly run --quiet --example seed_blobs -- "$here/corpus/blob_decode"

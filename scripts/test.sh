#!/usr/bin/env bash
# The project's test command (README): formatting, lints, then every test and doctest of
# every crate with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo doc (all features, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet

echo "== cargo test (all features)"
cargo test --workspace --all-features

echo "== cargo clippy (core without default features: no http runner)"
cargo clippy -p baseshift-core --no-default-features -- -D warnings

echo "== benchmark smoke run"
cargo run -p baseshift-benches -- --smoke

echo "== benchmark comparison smoke run (the harness against its own build)"
bench_bin="${CARGO_TARGET_DIR:-target}/debug/baseshift-benches"
cargo run -p baseshift-benches -- --smoke --backend memory --scenario chain --against "$bench_bin" --rounds 2

#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, store tests on SQLite and
# PostgreSQL, and end-to-end tests that start the real `mandate` binary.
#
# PostgreSQL: MANDATE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
# each test creates and drops its own database. MANDATE_TEST_POSTGRES=skip runs
# the SQLite half only (and says so).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
cargo test --workspace --locked

#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, store tests on SQLite and
# PostgreSQL, end-to-end tests that start the real `mandate` binary, the
# Python client's tests, and the MCP gateway tests against real MCP software.
#
# PostgreSQL: MANDATE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
# each test creates and drops its own database. MANDATE_TEST_POSTGRES=skip runs
# the SQLite half only (and says so).
#
# MCP: the reference MCP servers (npm) and the official MCP Python SDK (PyPI)
# are installed, at pinned versions, into MANDATE_TEST_CACHE (default
# ./.cache/mandate-test), once; a change of pins reinstalls them. This needs
# node, npm and python3 (with venv). MANDATE_TEST_MCP=skip skips all of it, and
# the MCP gateway tests then say that they skipped.
#
# Arguments are passed to `cargo test` instead of `--workspace`
# (`bash scripts/test.sh -p mandate-cli --test mcp_gateway`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

NPM_PACKAGES=(
  @modelcontextprotocol/server-everything@2026.8.31
  @modelcontextprotocol/server-filesystem@2026.8.31
)
PY_PACKAGES=(
  mcp==2.3.0
  httpx==0.28.1
  cryptography==50.0.2
  pytest==9.2.0
)

# Installs the MCP test software into $CACHE unless its stamp says it is there
# at these exact versions.
mcp_setup() {
  local missing=()
  command -v node >/dev/null || missing+=(node)
  command -v npm >/dev/null || missing+=(npm)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    echo "scripts/test.sh: the MCP gateway tests need ${missing[*]}, which cannot be found." >&2
    echo "  Install them (Debian: apt-get install nodejs npm python3 python3-venv)," >&2
    echo "  or run with MANDATE_TEST_MCP=skip to skip the MCP tests." >&2
    exit 1
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "scripts/test.sh: python3 cannot make virtual environments (Debian: apt-get install python3-venv)," >&2
    echo "  or run with MANDATE_TEST_MCP=skip to skip the MCP tests." >&2
    exit 1
  fi

  CACHE="${MANDATE_TEST_CACHE:-$PWD/.cache/mandate-test}"
  mkdir -p "$CACHE"
  CACHE="$(cd "$CACHE" && pwd)"
  local stamp="$CACHE/stamp"
  local want
  want="$(
    printf 'npm %s\n' "${NPM_PACKAGES[@]}"
    printf 'pip %s\n' "${PY_PACKAGES[@]}"
    echo "node $(node --version)"
    echo "python $(python3 -c 'import sys; print(sys.version.split()[0])')"
    echo "client $PWD/clients/python $(sha256sum clients/python/pyproject.toml | cut -d' ' -f1)"
  )"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
        && -x "$CACHE/npm/node_modules/.bin/mcp-server-everything" \
        && -x "$CACHE/venv/bin/python" ]]; then
    echo "MCP test software: up to date in $CACHE"
  else
    echo "MCP test software: installing into $CACHE"
    rm -rf "$CACHE/npm" "$CACHE/venv" "$stamp"
    npm install --prefix "$CACHE/npm" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}"
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    "$CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check -e clients/python
    printf '%s\n' "$want" >"$stamp"
  fi
  export MANDATE_TEST_NPM_BIN="$CACHE/npm/node_modules/.bin"
  export MANDATE_TEST_PYTHON="$CACHE/venv/bin/python"
}

if [[ "${MANDATE_TEST_MCP:-}" == "skip" ]]; then
  echo "MANDATE_TEST_MCP=skip: the Python client's tests and the MCP gateway tests are SKIPPED" >&2
else
  mcp_setup
  "$MANDATE_TEST_PYTHON" -m pytest clients/python -q
fi

if (($#)); then
  cargo test --locked "$@"
else
  cargo test --workspace --locked
fi

#!/usr/bin/env bash
# HTTP load benchmark: AuthZEN decisions over loopback with the durable audit
# log on (SQLite, synchronous=FULL, group commit), side by side with the same
# server's no-op endpoint (/healthz), each measured with the same tool in the
# same run:
#   1. saturation throughput with wrk (CONNECTIONS connections, DURATION s);
#   2. latency at a fixed rate with oha (RATE requests/s, corrected for
#      coordinated omission), which is what a p99 target means.
#
# Run with: bash bench/http.sh
#   env: DURATION=10 CONNECTIONS=32 RATE=20000
# Installs wrk (Debian package, as root) and oha (cargo install, into
# ~/.cache/mandate-bench) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-20000}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is needed: apt-get install wrk" >&2
    exit 1
  fi
fi
tools="$HOME/.cache/mandate-bench"
export PATH="$tools/bin:$PATH"
command -v oha >/dev/null || cargo install oha --locked --root "$tools"

cargo build --release --locked -p mandate-cli
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
./target/release/mandate serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --policy-dir examples/authzen-todo --log-level warn >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^mandate listening on //p' "$work/out")
[ -n "$base" ] || { cat "$work/err"; exit 1; }

# Morty (editor) updating his own todo: properties in the request, so the
# entity slice, the schema check, Cedar and the audit write all run.
body='{"subject":{"type":"user","id":"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},"action":{"name":"can_update_todo"},"resource":{"type":"todo","id":"7240d0db-8ff0-41ec-98b2-34a096273b91","properties":{"ownerID":"morty@the-citadel.com"}}}'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA

wrk_run() { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@"; }
oha_run() { oha --no-tui -z "${DURATION}s" -q "$RATE" -c "$CONNECTIONS" --latency-correction "$@"; }

echo "== 1. saturation (wrk, $CONNECTIONS connections, ${DURATION}s)"
wrk_run "$base/healthz" >"$work/wrk-noop"
wrk_run -s "$work/post.lua" "$base/access/v1/evaluation" >"$work/wrk-eval"
echo "== 2. fixed rate (oha, $RATE/s, $CONNECTIONS connections, ${DURATION}s, latency-corrected)"
oha_run "$base/healthz" >"$work/oha-noop"
oha_run -m POST -H 'content-type: application/json' -d "$body" "$base/access/v1/evaluation" >"$work/oha-eval"

kill -TERM $pid; wait $pid || true
./target/release/mandate audit verify --data-dir "$work/data"

wrk_rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
wrk_p() { awk -v p="$2" '$1==p {print $2}' "$1"; }
oha_rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
oha_p() { awk -v p="$2" '$1==p {print $3, $4}' "$1"; }
oha_ok() { awk '/Success rate/ {print $3}' "$1"; }
printf '%-34s %14s %12s %12s\n' "" "no-op /healthz" "decisions" ""
printf '%-34s %14s %12s\n' "wrk saturation req/s" "$(wrk_rps "$work/wrk-noop")" "$(wrk_rps "$work/wrk-eval")"
printf '%-34s %14s %12s\n' "wrk saturation p99" "$(wrk_p "$work/wrk-noop" 99%)" "$(wrk_p "$work/wrk-eval" 99%)"
printf '%-34s %14s %12s\n' "oha achieved req/s (target $RATE)" "$(oha_rps "$work/oha-noop")" "$(oha_rps "$work/oha-eval")"
printf '%-34s %14s %12s\n' "oha success rate" "$(oha_ok "$work/oha-noop")" "$(oha_ok "$work/oha-eval")"
printf '%-34s %14s %12s\n' "oha p50" "$(oha_p "$work/oha-noop" 50.00%)" "$(oha_p "$work/oha-eval" 50.00%)"
printf '%-34s %14s %12s\n' "oha p99" "$(oha_p "$work/oha-noop" 99.00%)" "$(oha_p "$work/oha-eval" 99.00%)"

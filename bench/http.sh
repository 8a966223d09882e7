#!/usr/bin/env bash
# HTTP load benchmark: AuthZEN decisions over loopback with the durable audit
# log on (SQLite, synchronous=FULL, group commit), side by side with the same
# server's no-op endpoint (/healthz), with the same tool in the same run.
#
# Run with: bash bench/http.sh            (DURATION=10 CONNECTIONS=64 THREADS=1)
# Needs wrk (installed from Debian's packages if missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is needed: apt-get install wrk" >&2
    exit 1
  fi
fi

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
# entity slice, schema check, Cedar, and the audit write all run.
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"subject":{"type":"user","id":"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},"action":{"name":"can_update_todo"},"resource":{"type":"todo","id":"7240d0db-8ff0-41ec-98b2-34a096273b91","properties":{"ownerID":"morty@the-citadel.com"}}}'
LUA

echo "== no-op endpoint: GET /healthz"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$base/healthz" | tee "$work/noop"
echo "== AuthZEN decision with durable audit: POST /access/v1/evaluation"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" "$base/access/v1/evaluation" | tee "$work/eval"

kill -TERM $pid; wait $pid || true
./target/release/mandate audit verify --data-dir "$work/data"
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1=="99%" {print $2}' "$1"; }
echo "summary: no-op $(rps "$work/noop") req/s (p99 $(p99 "$work/noop")); decisions $(rps "$work/eval") req/s (p99 $(p99 "$work/eval"))"

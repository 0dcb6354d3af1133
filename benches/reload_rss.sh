#!/usr/bin/env bash
# Peak memory while the 1M-domain blocklist is reloaded under load (issue 3):
# starts Picket with the list, loads it with dnsperf (cached names and
# blocked names, 50/50), sends SIGHUP RELOADS times, and prints the steady
# RSS before the reloads and the peak (VmHWM) after them.
# Needs the data of benches/run.sh (run it once first) and dnsperf.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PICKET_BIN:-target/release/picket}
DATA=${BENCH_OUT:-bench-out}/data
PORT=${PICKET_PORT:-25365}
UPSTREAM=${UPSTREAM:-127.0.0.1:25353}
RELOADS=${RELOADS:-5}
[ -f "$DATA/blocklist.txt" ] || { echo "no $DATA/blocklist.txt: run benches/run.sh first" >&2; exit 1; }
kib() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status"; }
"$BIN" serve --listen "127.0.0.1:$PORT" --upstream "$UPSTREAM" --threads 1 --no-policy \
  --blocklist "$DATA/blocklist.txt" --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" health.invalid >/dev/null 2>&1 && break
  sleep 0.1
done
dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/mix.txt" -n 1 -q 100 >/dev/null 2>&1 || true
steady=$(kib "$pid" VmRSS)
dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/mix.txt" -l $((RELOADS * 2 + 4)) -Q 20000 -q 100 >/tmp/reload-dnsperf.log 2>&1 &
load=$!
sleep 2
for _ in $(seq "$RELOADS"); do
  kill -HUP "$pid"
  sleep 2
done
wait "$load" || true
peak=$(kib "$pid" VmHWM)
lost=$(awk '/Queries lost/ { print $3 }' /tmp/reload-dnsperf.log)
echo "steady RSS ${steady} KiB, peak during ${RELOADS} reloads under load ${peak} KiB," \
  "ratio $(awk -v a="$peak" -v b="$steady" 'BEGIN { printf "%.2f", a / b }'), queries lost: ${lost}"

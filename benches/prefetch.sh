#!/usr/bin/env bash
# What prefetch does to latency with short, realistic TTLs: Picket with prefetch (the default)
# and with --no-prefetch, interleaved, each answering the same steady query stream for
# PREFETCH_SECONDS at a fixed rate (dnsperf -Q). NSD serves NAMES names whose TTLs are a CDN-like
# mix (20, 30, 60 and 300 s, a quarter each), so many entries expire during a run; every query
# of a name that expired waits for the upstream unless prefetch refreshed it first.
#
#   benches/prefetch.sh                        # target/release/picket, 2 rounds of 60 s
#   PICKET_BIN=/path ROUNDS=3 PREFETCH_SECONDS=90 benches/prefetch.sh
#
# Prints, per round and setting: p50, p99, p99.9 (ms, lost queries as infinitely slow) and the
# cache misses the clients saw (Picket's picket_cache_lookups_total{result="miss"}, so the
# warm-up pass's misses included). Output in bench-out/prefetch/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PICKET_BIN=${PICKET_BIN:-$ROOT/target/release/picket}
ROUNDS=${ROUNDS:-2}
PREFETCH_SECONDS=${PREFETCH_SECONDS:-60}
RATE=${RATE:-5000}
NAMES=${NAMES:-2000}
NSD_CPU=${NSD_CPU:-${LOAD_CPU:-0}} # NSD shares dnsperf's core (lib.sh: RESOLVER_CPU, LOAD_CPU)
NSD_PORT=${NSD_PORT:-28353}
PICKET_PORT=${PICKET_PORT:-28355}
METRICS_PORT=${METRICS_PORT:-28356}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
OUT=${BENCH_OUT:-$ROOT/bench-out}/prefetch
LOGS=$OUT
mkdir -p "$OUT"

# The zone and the query file: name i has TTL 20, 30, 60 or 300 s (i mod 4).
python3 - "$OUT" "$NAMES" <<'EOF'
import random, sys
out, n = sys.argv[1], int(sys.argv[2])
ttls = [20, 30, 60, 300]
with open(f"{out}/ttl.test.zone", "w") as z:
    z.write("$ORIGIN ttl.test.\n@ 3600 IN SOA ns.ttl.test. h.ttl.test. 1 7200 900 1209600 60\n")
    z.write("@ 3600 IN NS ns.ttl.test.\nns 3600 IN A 127.0.0.1\n")
    for i in range(n):
        z.write(f"n{i} {ttls[i % 4]} IN A 198.18.{i // 256 % 256}.{i % 256}\n")
rng = random.Random(8)
with open(f"{out}/queries.txt", "w") as q:
    for _ in range(200_000):
        q.write(f"n{rng.randrange(n)}.ttl.test. A\n")
with open(f"{out}/warm.txt", "w") as q:
    for i in range(n):
        q.write(f"n{i}.ttl.test. A\n")
EOF

start_nsd "$OUT/nsd" "$NSD_PORT" ttl.test "$OUT" n0.ttl.test.


one_run() { # round setting
    local tag=r$1-$2 extra=() pid misses p lost
    [[ $2 == off ]] && extra=(--no-prefetch)
    taskset -c "$RESOLVER_CPU" "$PICKET_BIN" serve --listen "127.0.0.1:$PICKET_PORT" \
        --upstream "127.0.0.1:$NSD_PORT" --threads 1 --dnssec off \
        --metrics "127.0.0.1:$METRICS_PORT" "${extra[@]}" >"$OUT/$tag.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$PICKET_PORT" n0.ttl.test. NOERROR 60 || die "Picket did not answer; see $OUT/$tag.log"
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$OUT/warm.txt" -n 1 >/dev/null
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$OUT/queries.txt" \
        -Q "$RATE" -l "$PREFETCH_SECONDS" -t 2 -v >"$OUT/$tag.dnsperf.txt" 2>&1 || true
    misses=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk '/^picket_cache_lookups_total\{result="miss"\}/ {print $2}')
    lost=$(awk '/Queries lost:/ {print $3; exit}' "$OUT/$tag.dnsperf.txt")
    read -r -a p <<<"$(percentiles "$OUT/$tag.dnsperf.txt" "$lost" 0.50 0.99 0.999)"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "${p[0]}" "${p[1]}" "${p[2]}" "${misses:-?}"
    sed -i '/^> /d' "$OUT/$tag.dnsperf.txt"
    stop_pid "$pid"
}

echo "| round | prefetch | p50 ms | p99 ms | p99.9 ms | cache misses |"
echo "|---|---|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(on off); else order=(off on); fi
    for setting in "${order[@]}"; do one_run "$r" "$setting"; done
done

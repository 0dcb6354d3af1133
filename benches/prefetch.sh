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
RESOLVER_CPU=${RESOLVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
NSD_PORT=${NSD_PORT:-28353}
PICKET_PORT=${PICKET_PORT:-28355}
METRICS_PORT=${METRICS_PORT:-28356}
OUT=${BENCH_OUT:-$ROOT/bench-out}/prefetch
mkdir -p "$OUT/nsd"

PIDS=()
stop() { # pid: TERM and wait, so the next start finds its port free
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; }
trap cleanup EXIT

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

cat >"$OUT/nsd/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@$NSD_PORT
  port: $NSD_PORT
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$OUT"
  database: ""
  zonelistfile: "$OUT/nsd/zone.list"
  xfrdfile: "$OUT/nsd/xfrd.state"
  pidfile: "$OUT/nsd/nsd.pid"
  logfile: "$OUT/nsd/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "ttl.test."
  zonefile: "ttl.test.zone"
EOF
rm -f "$OUT/nsd/zone.list" "$OUT/nsd/xfrd.state"
taskset -c "$LOAD_CPU" nsd -d -c "$OUT/nsd/nsd.conf" >"$OUT/nsd.out" 2>&1 &
PIDS+=($!)

ready() { # port
    for _ in $(seq 1200); do
        dig @127.0.0.1 -p "$1" +time=1 +tries=1 n0.ttl.test. A 2>/dev/null | grep -q 'status: NOERROR' && return 0
        sleep 0.05
    done
    echo "nothing answers on port $1" >&2
    exit 1
}
ready "$NSD_PORT"

# p50 p99 p99.9 in ms from a dnsperf -v output; lost queries count as infinitely slow.
percentiles() {
    local lost
    lost=$(awk '/Queries lost:/ {print $3; exit}' "$1")
    awk '/^> / {print $NF}' "$1" | sort -g | awk -v lost="${lost:-0}" '
        {v[NR] = $1}
        END {
            n = NR + lost
            split("0.50 0.99 0.999", q, " ")
            for (i = 1; i <= 3; i++) {
                k = int(q[i] * n + 0.999999); if (k < 1) k = 1
                out = out (i > 1 ? " " : "") (k > NR ? "inf" : sprintf("%.3f", v[k] * 1000))
            }
            print out
        }'
}

one_run() { # round setting
    local tag=r$1-$2 extra=() pid misses p
    [[ $2 == off ]] && extra=(--no-prefetch)
    taskset -c "$RESOLVER_CPU" "$PICKET_BIN" serve --listen "127.0.0.1:$PICKET_PORT" \
        --upstream "127.0.0.1:$NSD_PORT" --threads 1 --dnssec off \
        --metrics "127.0.0.1:$METRICS_PORT" "${extra[@]}" >"$OUT/$tag.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    ready "$PICKET_PORT"
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$OUT/warm.txt" -n 1 >/dev/null
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$OUT/queries.txt" \
        -Q "$RATE" -l "$PREFETCH_SECONDS" -t 2 -v >"$OUT/$tag.dnsperf.txt" 2>&1 || true
    misses=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk '/^picket_cache_lookups_total\{result="miss"\}/ {print $2}')
    read -r -a p <<<"$(percentiles "$OUT/$tag.dnsperf.txt")"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "${p[0]}" "${p[1]}" "${p[2]}" "${misses:-?}"
    sed -i '/^> /d' "$OUT/$tag.dnsperf.txt"
    stop "$pid"
}

echo "| round | prefetch | p50 ms | p99 ms | p99.9 ms | cache misses |"
echo "|---|---|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(on off); else order=(off on); fi
    for setting in "${order[@]}"; do one_run "$r" "$setting"; done
done

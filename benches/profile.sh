#!/usr/bin/env bash
# Where a Picket worker spends its cycles under benches/run.sh's load: `perf record -g`
# (user and kernel) of one workload's max run, then `perf report` top items. Same
# set-up as run.sh (NSD upstream, resolver pinned to RESOLVER_CPU with one worker,
# dnsperf on LOAD_CPU, the example policies or PICKET_POLICIES), own ports. Needs run.sh's data
# (bench-out/data, made by `benches/run.sh` or gen_data.py) and root for perf.
#
#   PICKET_BIN=target/release/picket WORKLOAD=hits benches/profile.sh
#   WORKLOAD=block PROFILE_SECONDS=8 benches/profile.sh
#   PROFILE_RATE=20000 WORKLOAD=hits benches/profile.sh   # at a steady 20,000 q/s (dnsperf -Q)
#
# Output: bench-out/profile/<workload>.data, <workload>.self.txt (flat, self
# cycles by symbol) and <workload>.children.txt (inclusive, call graph).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PICKET_BIN=${PICKET_BIN:-$ROOT/target/release/picket}
WORKLOAD=${WORKLOAD:-hits}
PROFILE_SECONDS=${PROFILE_SECONDS:-8}
NSD_CPU=${NSD_CPU:-${LOAD_CPU:-0}} # NSD shares dnsperf's core (lib.sh: RESOLVER_CPU, LOAD_CPU)
NSD_PORT=${NSD_PORT:-27353}
PICKET_PORT=${PICKET_PORT:-27355}
profile_data=${DATA:-$ROOT/bench-out/data}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
DATA=$profile_data
OUT=${PROFILE_OUT:-$ROOT/bench-out/profile}
LOGS=$OUT
mkdir -p "$OUT"

[[ -f $DATA/hits.txt ]] || { echo "no data in $DATA: run benches/run.sh once (or gen_data.py)" >&2; exit 1; }
for port in "$NSD_PORT" "$PICKET_PORT"; do
    port_busy "$port" && { echo "udp port $port is in use" >&2; exit 1; }
done
start_nsd "$OUT/nsd" "$NSD_PORT" bench.test "$DATA" h0.bench.test.

cmd=("$PICKET_BIN" serve --listen "127.0.0.1:$PICKET_PORT" --upstream "127.0.0.1:$NSD_PORT"
    --threads 1 --dnssec off --cache-size 512MiB)
# As in run.sh: PICKET_POLICIES= (empty) profiles the neutral built-in policy.
PICKET_POLICIES=${PICKET_POLICIES-$ROOT/policies/examples}
[[ -n $PICKET_POLICIES ]] && cmd+=(--policies "$PICKET_POLICIES")
probe=h0.bench.test. want=NOERROR queries=$DATA/hits.txt
case $WORKLOAD in
hits) ;;
block)
    cmd+=(--blocklist "$DATA/blocklist.txt")
    probe=$(<"$DATA/blocked-probe.txt"). want=NXDOMAIN queries=$DATA/mix.txt ;;
miss) queries=$DATA/miss.txt ;;
*) echo "WORKLOAD is hits, block or miss" >&2; exit 1 ;;
esac
# shellcheck disable=SC2206 # deliberate word splitting of extra args
[[ -n $PICKET_EXTRA_ARGS ]] && cmd+=($PICKET_EXTRA_ARGS)
taskset -c "$RESOLVER_CPU" "${cmd[@]}" >"$OUT/$WORKLOAD.picket.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_ready "$PID" "$PICKET_PORT" "$probe" "$want" 60 ||
    die "127.0.0.1:$PICKET_PORT did not answer $probe with $want; see $OUT/$WORKLOAD.picket.log"
[[ $WORKLOAD == miss ]] || taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" \
    -d "$DATA/hits.txt" -n 1 -c 4 -q 200 >/dev/null

once=()
[[ $WORKLOAD == miss ]] && once=(-n 1) # every miss name asked once
[[ -n ${PROFILE_RATE:-} ]] && once+=(-Q "$PROFILE_RATE") # a steady rate, not full speed
taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$queries" -c "${PROFILE_CLIENTS:-4}" -q 200 \
    -l "$((PROFILE_SECONDS + 2))" "${once[@]}" >"$OUT/$WORKLOAD.dnsperf.txt" 2>&1 &
DNSPERF=$!
sleep 1
perf record -F "${PERF_FREQ:-15000}" --call-graph "${PERF_CALLGRAPH:-fp}" -p "$PID" -o "$OUT/$WORKLOAD.data" -- sleep "$PROFILE_SECONDS" 2>"$OUT/$WORKLOAD.perf.log"
wait "$DNSPERF" || true
perf report -i "$OUT/$WORKLOAD.data" --no-children --stdio --percent-limit 0.05 -g none \
    --sort symbol 2>/dev/null | grep -v '^$' >"$OUT/$WORKLOAD.self.txt"
perf report -i "$OUT/$WORKLOAD.data" --children --stdio --percent-limit 0.5 -g none \
    --sort symbol 2>/dev/null | grep -v '^$' >"$OUT/$WORKLOAD.children.txt"
grep -E 'Queries per second|Queries completed' "$OUT/$WORKLOAD.dnsperf.txt" || true
echo "profile: $OUT/$WORKLOAD.self.txt, $OUT/$WORKLOAD.children.txt" >&2

#!/usr/bin/env bash
# CPU per query of Unbound and Picket at fixed query rates and numbers of client sockets, not
# only at full load: `run.sh` compares each resolver at its own top rate, where Picket's batches
# are largest, so its ratios are the most flattering ones. Same set-up as run.sh (NSD upstream,
# the resolver pinned to RESOLVER_CPU with one worker, dnsperf on LOAD_CPU, the example
# policies or PICKET_POLICIES), own ports (286xx), a fresh resolver per pass, the resolvers
# interleaved in every round.
#
#   PICKET_BIN=target/release/picket PICKET_POLICIES= benches/rates.sh
#   WORKLOAD=miss POINTS="20000:4 40000:4 max:4 40000:100" benches/rates.sh
#
# POINTS: rate:clients pairs; the rate is dnsperf's -Q ("max": as fast as dnsperf goes), the
# clients its -c (its sockets, each a client to the resolver). Each pass lasts RATE_SECONDS
# (5). Hits are warmed first; every miss name is asked once (a pass stops at MISS_NAMES).
# Prints a markdown table: per point, the medians over ROUNDS of each resolver's CPU µs per
# answered query, the median of the per-round Unbound/Picket ratios (the rounds' own in
# brackets) and the rates reached. Raw rows in $BENCH_OUT/rates.tsv (bench-out/ by default).
set -euo pipefail

export NSD_PORT=${NSD_PORT:-28653} UNBOUND_PORT=${UNBOUND_PORT:-28654} PICKET_PORT=${PICKET_PORT:-28655}
WORKLOAD=${WORKLOAD:-hits}
POINTS=${POINTS:-20000:4 100000:4 250000:4 max:4 20000:100 100000:100 250000:100 max:100}
RATE_SECONDS=${RATE_SECONDS:-5}
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=rates

[[ $WORKLOAD == miss || $WORKLOAD == hits ]] || die "WORKLOAD is miss or hits"
[[ $RESOLVERS == "unbound picket" ]] || die "rates.sh compares both resolvers: leave RESOLVERS unset"
ensure_deps
begin_run
find_picket
((PICKET_OK)) || die "no Picket binary to run (PICKET_BIN)"
gen_data
start_nsd
TSV=$OUT/rates.tsv
: >"$TSV"

# One pass: a fresh resolver, warmed for hits, then RATE_SECONDS of dnsperf at `rate` from
# `clients` sockets; appends round, rate, clients, resolver, queries/s and CPU µs per answer.
pass() { # round rate clients resolver
    local round=$1 rate=$2 clients=$3 res=$4 tag=$4-$2-$3 t0 t1 answered
    local -a extra=(-l "$RATE_SECONDS")
    [[ $rate == max ]] || extra+=(-Q "$rate")
    [[ $WORKLOAD == miss ]] && extra+=(-n 1)
    start_resolver "$res" "$WORKLOAD" "$tag" || die "$START_ERR"
    [[ $WORKLOAD == hits ]] && warm "$tag"
    t0=$(cpu_ticks "$RES_PID")
    DNSPERF_CLIENTS=$clients dnsperf_run "$LOGS/$tag.r$round.txt" "$DATA/$WORKLOAD.txt" "${extra[@]}"
    t1=$(cpu_ticks "$RES_PID")
    stop_resolver
    answered=$(dp_num "$LOGS/$tag.r$round.txt" "Queries completed:")
    [[ -n $answered && $answered != 0 ]] || die "$res: no answers; see $LOGS/$tag.r$round.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$rate" "$clients" "$res" \
        "$(dp_num "$LOGS/$tag.r$round.txt" "Queries per second:")" \
        "$(awk -v a="$t0" -v b="$t1" -v q="$answered" -v hz="$(getconf CLK_TCK)" \
            'BEGIN{printf "%.3f", (b - a) * 1e6 / hz / q}')" >>"$TSV"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for point in $POINTS; do
        # Alternate which resolver goes first, so neither always runs in the other's wake.
        if ((round % 2)); then order="unbound picket"; else order="picket unbound"; fi
        for res in $order; do pass "$round" "${point%:*}" "${point#*:}" "$res"; done
    done
done
stop_pid "$NSD_PID"
NSD_PID=

python3 - "$TSV" "$WORKLOAD" <<'PY'
import collections, statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines() if line]
passes = collections.defaultdict(dict)
points = []
for round_, rate, clients, res, qps, us in rows:
    passes[(rate, clients)].setdefault(round_, {})[res] = (float(qps), float(us))
    if (rate, clients) not in points:
        points.append((rate, clients))
print(f"| {sys.argv[2]}: q/s | clients | Unbound µs/q | Picket µs/q | Unbound/Picket (per round) | q/s reached, Unbound / Picket |")
print("|---|---:|---:|---:|---:|---|")
for rate, clients in points:
    rounds = [r for r in passes[(rate, clients)].values() if len(r) == 2]
    median = lambda res, i: statistics.median(r[res][i] for r in rounds)
    ratios = [r["unbound"][1] / r["picket"][1] for r in rounds]
    print(f"| {rate} | {clients} | {median('unbound', 1):.2f} | {median('picket', 1):.2f} | "
          f"**{statistics.median(ratios):.2f}×** ({', '.join(f'{x:.2f}' for x in ratios)}) | "
          f"{median('unbound', 0):,.0f} / {median('picket', 0):,.0f} |")
PY

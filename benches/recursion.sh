#!/usr/bin/env bash
# Cache-miss cost in recursive mode: Picket against Unbound, both iterating
# from the same fake tree on loopback, both validating. Method and figures:
# benches/README.md ("Recursion").
#
#   benches/recursion.sh                              # ROUNDS=3, 10 s runs, both variants
#   VARIANTS=signed ROUNDS=1 benches/recursion.sh     # a quick look
#   PICKET_BIN=/path/to/picket benches/recursion.sh
#   PERF=1 ...                                        # perf record of Picket's runs (PERF_CALLGRAPH)
#   PICKET_BASE_BIN=/path/to/main/picket ...          # also a baseline build ("base"), interleaved
#   MODE=hits benches/recursion.sh                    # cache hits: recursively resolved vs forwarded
#
# The tree (benches/recursion_tree.py): root on 127.0.0.10, tld1./tld2. on
# .11, 200 leaf zones on .12-.15 (a quarter glueless), 400,000 names with an
# A record each. Variant "signed" signs every zone (ECDSA P-256, NSEC, with
# ldns-signzone) and anchors the root; "unsigned" anchors an island that is
# never asked about, so both resolvers validate and find every answer
# insecure. Each round starts each resolver afresh, warms the delegations
# (one name per leaf zone), then sends new names only (dnsperf -n 1) for
# BENCH_SECONDS. Per run: new names per second, CPU µs per new name (the
# resolver's utime+stime over the run, divided by the answers), peak RSS.
#
# MODE=hits measures warm-cache answers instead, Picket against itself: one
# recursive Picket resolves HIT_NAMES names (cached), a second one (same
# binary, same --cache-size, validating with the same anchor) forwards the
# same names to it (cached too); then dnsperf asks each the same names over
# and over for BENCH_SECONDS, in turn (the order flips every round), and
# the CPU per answer of the one asked is the cost of a hit: recursively
# resolved against forwarded.
#
# Needs root (NSD listens on port 53 of 127.0.0.10-15: Unbound only asks
# port 53), nsd, unbound, dnsperf, ldnsutils, dnsutils, python3, taskset.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
BENCH_SECONDS=${BENCH_SECONDS:-10}
VARIANTS=${VARIANTS:-"unsigned signed"}
PICKET_BASE_BIN=${PICKET_BASE_BIN:-}
RESOLVERS=${RESOLVERS:-"unbound picket${PICKET_BASE_BIN:+ base}"}
ZONES=${ZONES:-200}
NAMES=${NAMES:-400000}
OUTSTANDING=${OUTSTANDING:-100}
PICKET_BIN=${PICKET_BIN:-$ROOT/target/release/picket}
PICKET_EXTRA_ARGS=${PICKET_EXTRA_ARGS:-}
CACHE_SIZE=${CACHE_SIZE:-256MiB}            # Picket --cache-size; Unbound msg + rrset caches
RESOLVER_CPU=${RESOLVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}                     # dnsperf and the NSDs
UNBOUND_PORT=${UNBOUND_PORT:-25361}
PICKET_PORT=${PICKET_PORT:-25362}
BASE_PORT=${BASE_PORT:-25363}
PERF=${PERF:-0}
PERF_CALLGRAPH=${PERF_CALLGRAPH:-fp}         # dwarf,16384 for whole stacks (larger files)
LOG_TAG=recursion
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh" # processes, NSD and Unbound configurations, log, record
OUT=${BENCH_OUT:-$ROOT/bench-out/recursion}
MODE=${MODE:-misses}                        # misses: new names against Unbound; hits: see above
HIT_NAMES=${HIT_NAMES:-20000}
FORWARD_PORT=${FORWARD_PORT:-25364}

DATA=$OUT/data
LOGS=$OUT/logs
RAW=$OUT/raw.tsv

[[ $(id -u) == 0 ]] || die "run as root: NSD must listen on port 53"
[[ -x $PICKET_BIN ]] || die "no Picket binary at $PICKET_BIN (nice -n 15 cargo build --release)"
PATH=$PATH:/usr/sbin
for tool in nsd unbound dnsperf ldns-keygen ldns-signzone dig python3 taskset; do
    command -v $tool >/dev/null || die "missing $tool (apt-get install nsd unbound dnsperf ldnsutils dnsutils python3 util-linux)"
done
if ss -lnu | grep -qE '127\.0\.0\.1[0-5]:53 '; then
    die "something already listens on 127.0.0.10-15:53"
fi
mkdir -p "$DATA" "$LOGS"

# ---- the tree, unsigned and signed (kept while ZONES and NAMES stay) ----------
make_tree() {
    local stamp="zones=$ZONES names=$NAMES v=1"
    [[ -f $DATA/stamp && $(cat "$DATA/stamp") == "$stamp" ]] && return 0
    log "generating the tree ($ZONES leaf zones, $NAMES names) and signing it"
    rm -rf "${DATA:?}"/*
    python3 "$ROOT/benches/recursion_tree.py" "$DATA/unsigned" "$ZONES" "$NAMES"
    mkdir -p "$DATA/signed" "$DATA/keys"
    cp "$DATA/unsigned"/{names.txt,warm.txt,zones.txt,root.hints} "$DATA/signed/"
    # Leaves first, then the TLDs (with their children's DS), then the root.
    local zone ip file key depth
    for depth in 2 1 0; do
        while read -r zone ip file; do
            [[ $(awk -F. '{ print $0 == "." ? 0 : NF - 1 }' <<<"$zone") == "$depth" ]] || continue
            cp "$DATA/unsigned/$file" "$DATA/keys/$file"
            cat "$DATA/keys/ds-of-children-$zone" >>"$DATA/keys/$file" 2>/dev/null || true
            key=$(cd "$DATA/keys" && ldns-keygen -a ECDSAP256SHA256 -k "$zone")
            (cd "$DATA/keys" && ldns-signzone -o "$zone" -f "$DATA/signed/$file" "$file" "$key")
            local parent=${zone#*.}; [[ -z $parent ]] && parent=.
            [[ $zone == . ]] || cat "$DATA/keys/$key.ds" >>"$DATA/keys/ds-of-children-$parent"
            [[ $zone == . ]] && cp "$DATA/keys/$key.ds" "$DATA/signed/anchor"
        done <"$DATA/unsigned/zones.txt"
    done
    # The unsigned tree's anchor: an island nobody asks about.
    key=$(cd "$DATA/keys" && ldns-keygen -a ECDSAP256SHA256 -k island.invalid.)
    cp "$DATA/keys/$key.ds" "$DATA/unsigned/anchor"
    echo "$stamp" >"$DATA/stamp"
}

# ---- authorities ---------------------------------------------------------------
start_nsds() { # variant
    local dir=$DATA/$1 ip
    local -a zones
    for ip in 127.0.0.10 127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15; do
        # shellcheck disable=SC2207 # zone names and file names have no spaces
        zones=($(awk -v ip="$ip" '$2 == ip { print $1, $3 }' "$dir/zones.txt"))
        write_nsd_conf "$OUT/nsd/$ip" "$ip" 53 "$dir" "${zones[@]}"
        taskset -c "$LOAD_CPU" nsd -d -c "$OUT/nsd/$ip/nsd.conf" >"$LOGS/nsd-$ip.log" 2>&1 &
        PIDS+=($!)
        NSD_PIDS+=($!)
    done
    local i
    for i in $(seq 600); do # a loaded machine takes ~40 s to load the signed zones
        dig +short +norec @127.0.0.15 -p 53 SOA z1.tld2. >/dev/null 2>&1 \
            && dig +short +norec @127.0.0.10 SOA . | grep -q . && return 0
        sleep 0.2
    done
    die "NSD did not start (see $LOGS/nsd-*.log and $OUT/nsd/*/nsd.log)"
}

# ---- resolvers -------------------------------------------------------------------
start_unbound() { # variant
    local conf=$OUT/unbound-$1.conf
    {
        unbound_server_conf "$UNBOUND_PORT" 1
        cat <<EOF
  root-hints: "$DATA/$1/root.hints"
  trust-anchor-file: "$DATA/$1/anchor"
  module-config: "validator iterator"
  qname-minimisation: yes
  msg-cache-size: $((${CACHE_SIZE%MiB} / 3))m
  rrset-cache-size: $((${CACHE_SIZE%MiB} * 2 / 3))m
  msg-cache-slabs: 1
  rrset-cache-slabs: 1
  key-cache-slabs: 1
  infra-cache-slabs: 1
  num-queries-per-thread: 4096
  outgoing-range: 8192
  ratelimit: 0
  ip-ratelimit: 0
  so-reuseport: no
remote-control:
  control-enable: no
EOF
    } >"$conf"
    taskset -c "$RESOLVER_CPU" unbound -d -c "$conf" >"$LOGS/unbound-$1-$2.log" 2>&1 &
    RES_PID=$!
    PIDS+=($RES_PID)
    RES_PORT=$UNBOUND_PORT
}

start_picket() { # variant round [binary port name]
    local bin=${3:-$PICKET_BIN} port=${4:-$PICKET_PORT} name=${5:-picket}
    # shellcheck disable=SC2086
    taskset -c "$RESOLVER_CPU" "$bin" serve --recursive --listen "127.0.0.1:$port" \
        --root-hints "$DATA/$1/root.hints" --trust-anchor "$DATA/$1/anchor" \
        --allow-private-nameservers --threads 1 --cache-size "$CACHE_SIZE" $PICKET_EXTRA_ARGS \
        >"$LOGS/$name-$1-$2.log" 2>&1 &
    RES_PID=$!
    PIDS+=($RES_PID)
    RES_PORT=$port
}

start_base() { start_picket "$1" "$2" "$PICKET_BASE_BIN" "$BASE_PORT" base; }

start_forwarder() { # variant round: Picket forwarding to the recursive one on PICKET_PORT
    # shellcheck disable=SC2086
    taskset -c "$RESOLVER_CPU" "$PICKET_BIN" serve --upstream "127.0.0.1:$PICKET_PORT" \
        --listen "127.0.0.1:$FORWARD_PORT" --trust-anchor "$DATA/$1/anchor" \
        --threads 1 --cache-size "$CACHE_SIZE" $PICKET_EXTRA_ARGS \
        >"$LOGS/forwarded-$1-$2.log" 2>&1 &
    RES_PID=$!
    PIDS+=($RES_PID)
    RES_PORT=$FORWARD_PORT
}

wait_answering() { # resolver-name: until RES_PORT answers
    local i
    for i in $(seq 200); do
        dig +short +tries=1 +time=1 @127.0.0.1 -p "$RES_PORT" www.z0.tld1. A 2>/dev/null | grep -q . && return 0
        kill -0 "$RES_PID" 2>/dev/null || die "$1 exited (see $LOGS)"
        sleep 0.1
    done
}

run_one() { # variant round resolver
    local variant=$1 round=$2 resolver=$3
    "start_$resolver" "$variant" "$round"
    wait_answering "$resolver"
    # Warm: every leaf zone's delegation (and keys, when signed).
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$RES_PORT" -d "$DATA/$variant/warm.txt" -n 1 -q 20 -t 5 \
        >"$LOGS/warm-$variant-$round-$resolver.txt" 2>&1 || true
    local before after perf_pid=
    if [[ $PERF == 1 && $resolver != unbound ]]; then
        perf record --call-graph "$PERF_CALLGRAPH" -F 999 -o "$OUT/perf-$variant-$round-$resolver.data" -p "$RES_PID" >"$LOGS/perf-$variant-$round.log" 2>&1 &
        perf_pid=$!
    fi
    before=$(cpu_ticks "$RES_PID")
    local result=$LOGS/dnsperf-$variant-$round-$resolver.txt
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$RES_PORT" -d "$DATA/$variant/names.txt" -n 1 \
        -l "$BENCH_SECONDS" -q "$OUTSTANDING" -t 5 >"$result" 2>&1 || true
    after=$(cpu_ticks "$RES_PID")
    if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    record_run "$variant" "$round" "$resolver" "$RES_PID" "$result" $((after - before)) name
    record "$variant" "$round" "$resolver" log_lines "$(wc -l <"$LOGS/$resolver-$variant-$round.log" 2>/dev/null || echo 0)"
    stop_pid "$RES_PID"
    RES_PID=
}

record_run() { # variant round who pid dnsperf-output ticks unit: per-second and per-answer figures
    local variant=$1 round=$2 who=$3 pid=$4 result=$5 ticks=$6 unit=$7 hz completed seconds noerror
    hz=$(getconf CLK_TCK)
    completed=$(awk '/Queries completed:/ { print $3 }' "$result")
    seconds=$(awk '/Run time \(s\):/ { print $4 }' "$result")
    noerror=$(grep -oE 'NOERROR [0-9]+' "$result" | awk '{ print $2 }')
    [[ -n $completed && $completed != 0 ]] || die "no answers from $who (see $result)"
    record "$variant" "$round" "$who" "${unit}s_per_s" "$(awk -v c="$completed" -v s="$seconds" 'BEGIN { printf "%.0f", c / s }')"
    record "$variant" "$round" "$who" "cpu_us_per_$unit" "$(awk -v t="$ticks" -v h="$hz" -v c="$completed" 'BEGIN { printf "%.2f", t / h * 1e6 / c }')"
    record "$variant" "$round" "$who" noerror_pct "$(awk -v n="${noerror:-0}" -v c="$completed" 'BEGIN { printf "%.2f", 100 * n / c }')"
    record "$variant" "$round" "$who" rss_peak_mib "$(awk -v k="$(status_kib "$pid" VmHWM)" 'BEGIN { printf "%.0f", k / 1024 }')"
    log "$variant round $round $who: $completed answers in ${seconds}s, $ticks ticks"
}

measure_hits() { # variant round who pid port: dnsperf repeats the names, all cache hits
    local variant=$1 round=$2 who=$3 pid=$4 port=$5 before after
    local result=$LOGS/hits-$variant-$round-$who.txt
    before=$(cpu_ticks "$pid")
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/$variant/hits.txt" \
        -l "$BENCH_SECONDS" -q "$OUTSTANDING" -t 5 >"$result" 2>&1 || true
    after=$(cpu_ticks "$pid")
    record_run "$variant" "$round" "$who" "$pid" "$result" $((after - before)) hit
}

run_hits() { # variant round: the same names, resolved recursively and forwarded
    local variant=$1 round=$2 rec_pid fwd_pid who
    head -n "$HIT_NAMES" "$DATA/$variant/names.txt" >"$DATA/$variant/hits.txt"
    start_picket "$variant" "$round"
    rec_pid=$RES_PID
    wait_answering recursive
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PICKET_PORT" -d "$DATA/$variant/hits.txt" -n 1 \
        -q "$OUTSTANDING" -t 5 >"$LOGS/hits-warm-$variant-$round-recursive.txt" 2>&1 || true
    start_forwarder "$variant" "$round"
    fwd_pid=$RES_PID
    wait_answering forwarded
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$FORWARD_PORT" -d "$DATA/$variant/hits.txt" -n 1 \
        -q "$OUTSTANDING" -t 5 >"$LOGS/hits-warm-$variant-$round-forwarded.txt" 2>&1 || true
    local order="recursive forwarded"
    ((round % 2 == 0)) && order="forwarded recursive"
    for who in $order; do
        if [[ $who == recursive ]]; then
            measure_hits "$variant" "$round" recursive "$rec_pid" "$PICKET_PORT"
        else
            measure_hits "$variant" "$round" forwarded "$fwd_pid" "$FORWARD_PORT"
        fi
    done
    stop_pid "$fwd_pid"
    stop_pid "$rec_pid"
}

summarize_hits() {
    python3 - "$RAW" <<'EOF' | tee "$OUT/results-hits.md"
import statistics, sys
from collections import defaultdict
values = defaultdict(list)
for line in open(sys.argv[1]):
    variant, _round, who, metric, value = line.split("\t")
    values[(variant, who, metric)].append(float(value))
med = lambda *k: statistics.median(values[k]) if values.get(k) else float("nan")
print("| tree | names | hits/s | CPU µs per hit | peak RSS MiB | NOERROR % |")
print("|---|---|---:|---:|---:|---:|")
for v in sorted({k[0] for k in values}, key=lambda v: v != "unsigned"):
    for w in ("recursive", "forwarded"):
        print(f"| {v} | {w} | {med(v, w, 'hits_per_s'):.0f} | {med(v, w, 'cpu_us_per_hit'):.2f} "
              f"| {med(v, w, 'rss_peak_mib'):.0f} | {med(v, w, 'noerror_pct'):.2f} |")
    print(f"| {v} | **recursive/forwarded** | | {med(v, 'recursive', 'cpu_us_per_hit') / med(v, 'forwarded', 'cpu_us_per_hit'):.2f}× | | |")
print(f"\nmedians of {max(len(x) for x in values.values())} rounds; per-round values in {sys.argv[1]}")
EOF
}

make_tree
: >"$RAW"
if [[ $MODE == hits ]]; then
    for variant in $VARIANTS; do
        NSD_PIDS=()
        start_nsds "$variant"
        for round in $(seq "$ROUNDS"); do run_hits "$variant" "$round"; done
        for pid in "${NSD_PIDS[@]}"; do stop_pid "$pid"; done
    done
    summarize_hits
    exit 0
fi
for variant in $VARIANTS; do
    NSD_PIDS=()
    start_nsds "$variant"
    for round in $(seq "$ROUNDS"); do
        # Interleaved: the order flips every round.
        order=$RESOLVERS
        ((round % 2 == 0)) && order=$(tr ' ' '\n' <<<"$RESOLVERS" | tac | tr '\n' ' ')
        for resolver in $order; do run_one "$variant" "$round" "$resolver"; done
    done
    for pid in "${NSD_PIDS[@]}"; do stop_pid "$pid"; done
done

python3 - "$RAW" <<'EOF' | tee "$OUT/results.md"
import statistics, sys
from collections import defaultdict
values = defaultdict(list)
for line in open(sys.argv[1]):
    variant, _round, resolver, metric, value = line.split("\t")
    values[(variant, resolver, metric)].append(float(value))
variants = sorted({k[0] for k in values}, key=lambda v: v != "unsigned")
med = lambda *k: statistics.median(values[k]) if values.get(k) else float("nan")
print("| tree | resolver | new names/s | CPU µs per new name | peak RSS MiB | NOERROR % | log lines |")
print("|---|---|---:|---:|---:|---:|---:|")
for v in variants:
    for r in ("unbound", "base", "picket"):
        if (v, r, "names_per_s") in values:
            print(f"| {v} | {r} | {med(v, r, 'names_per_s'):.0f} | {med(v, r, 'cpu_us_per_name'):.1f} "
                  f"| {med(v, r, 'rss_peak_mib'):.0f} | {med(v, r, 'noerror_pct'):.2f} | {med(v, r, 'log_lines'):.0f} |")
    for r in ("base", "picket"):
        if (v, r, "cpu_us_per_name") in values and (v, "unbound", "cpu_us_per_name") in values:
            print(f"| {v} | **{r}/Unbound** | {med(v, r, 'names_per_s') / med(v, 'unbound', 'names_per_s'):.2f}× "
                  f"| {med(v, r, 'cpu_us_per_name') / med(v, 'unbound', 'cpu_us_per_name'):.2f}× | | | |")
print(f"\nmedians of {max(len(x) for x in values.values())} rounds; per-round values in {sys.argv[1]}")
EOF

#!/usr/bin/env bash
# System calls per query of Picket and Unbound on one workload of run.sh: `perf stat` of the
# `syscalls:sys_enter_*` tracepoints on the resolver's process during one dnsperf pass over a
# fixed number of names, divided by the answers dnsperf got. Same set-up as run.sh (NSD
# upstream, the resolver pinned to RESOLVER_CPU with one worker, dnsperf on LOAD_CPU, the
# example policies or PICKET_POLICIES), its own ports (262xx), a fresh process per pass.
# Needs run.sh's data in $BENCH_OUT/data (made here if missing) and root for perf.
#
#   PICKET_BIN=target/release/picket PICKET_POLICIES= benches/syscalls.sh
#   SYSCALL_QUERIES=20000 SYSCALL_RATE=5000 RESOLVERS=picket benches/syscalls.sh
#
# SYSCALL_RATE (q/s, dnsperf -Q) empty: as fast as dnsperf goes. Prints a markdown table of
# system calls per answered query, one column per resolver, with the process's CPU time
# (`cpu_us`: µs per query, `perf stat`'s task-clock while dnsperf ran), its context
# switches, the wake-ups of other threads it made (`sched:sched_waking`: mostly the client's or
# NSD's thread, woken by an answer or a query it sent) and the events its `epoll_wait` calls
# returned (the sum of their return values, from a `perf record` of
# `syscalls:sys_exit_epoll_wait`: how often the reactor found a socket ready).
set -euo pipefail

export NSD_PORT=${NSD_PORT:-26253} UNBOUND_PORT=${UNBOUND_PORT:-26254} PICKET_PORT=${PICKET_PORT:-26255}
WORKLOAD=${WORKLOAD:-miss}
SYSCALL_QUERIES=${SYSCALL_QUERIES:-20000}
SYSCALL_RATE=${SYSCALL_RATE:-}
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=syscalls

[[ $WORKLOAD == miss || $WORKLOAD == hits ]] || die "WORKLOAD is miss or hits"
ensure_deps
begin_run
[[ " $RESOLVERS " == *" picket "* ]] && find_picket
gen_data
start_nsd
queries=$OUT/queries.txt
# The hit names are few (HIT_NAMES): they are asked round and round up to SYSCALL_QUERIES. A
# miss name asked twice would be a hit, so misses stop at MISS_NAMES.
if [[ $WORKLOAD == miss ]] && ((SYSCALL_QUERIES > $(wc -l <"$DATA/miss.txt"))); then
    die "SYSCALL_QUERIES=$SYSCALL_QUERIES is more than the $(wc -l <"$DATA/miss.txt") miss names; raise MISS_NAMES"
fi
awk -v n="$SYSCALL_QUERIES" '{ name[NR] = $0 } END { for (i = 0; i < n; i++) print name[i % NR + 1] }' \
    "$DATA/$WORKLOAD.txt" >"$queries"
rate=()
[[ -n $SYSCALL_RATE ]] && rate=(-Q "$SYSCALL_RATE")

declare -A COUNT=()
for res in $RESOLVERS; do
    [[ $res == picket && $PICKET_OK == 0 ]] && continue
    tag=$res-$WORKLOAD
    start_resolver "$res" "$WORKLOAD" "$tag" || die "$START_ERR"
    [[ $WORKLOAD == hits ]] && warm "$tag"
    perf stat -x, -e 'syscalls:sys_enter_*,context-switches,task-clock,sched:sched_waking' -p "$RES_PID" -o "$LOGS/$tag.perf.txt" &
    PERF=$!
    perf record -q -e syscalls:sys_exit_epoll_wait -p "$RES_PID" -o "$LOGS/$tag.epoll.data" 2>/dev/null &
    RECORD=$!
    sleep 0.5
    dnsperf_run "$LOGS/$tag.dnsperf.txt" "$queries" -n 1 "${rate[@]}"
    kill -INT "$PERF" "$RECORD"
    wait "$PERF" || true
    wait "$RECORD" || true
    stop_resolver
    answered=$(dp_num "$LOGS/$tag.dnsperf.txt" "Queries completed:")
    [[ -n $answered && $answered != 0 ]] || die "$res: no answers; see $LOGS/$tag.dnsperf.txt"
    COUNT[$res/answered]=$answered
    while IFS=, read -r n _ event _; do
        if [[ $event == task-clock ]]; then # ms of CPU, kept as µs
            COUNT[$res/cpu_us]=$(awk -v ms="$n" 'BEGIN{printf "%d", ms * 1000}')
            continue
        fi
        [[ $n =~ ^[0-9]+$ && $n != 0 ]] || continue
        name=${event#syscalls:sys_enter_}
        COUNT[$res/$name]=$n
        [[ $name == context-switches ]] || COUNT[$res/all]=$((${COUNT[$res/all]:-0} + n))
    done <"$LOGS/$tag.perf.txt"
    # `perf script` ends each exit's line with the return value in hex: the events returned
    # (an error, negative, is above 2^31 and counted as none).
    COUNT[$res/epoll_wait_events]=$(perf script -i "$LOGS/$tag.epoll.data" 2>/dev/null |
        python3 -c 'import sys; print(sum(v for v in (int(l.split()[-1], 16) for l in sys.stdin if "sys_exit_epoll_wait" in l) if v < 1 << 31))')
done
stop_pid "$NSD_PID"
NSD_PID=

# One row per system call any resolver made at least 0.005 times per answer.
names=$(for k in "${!COUNT[@]}"; do n=${k#*/}; [[ $n == answered || $n == all ]] || echo "$n"; done | sort -u)
header="| system calls per answered query ($WORKLOAD, ${SYSCALL_RATE:-full} q/s)"
rule="|---"
for res in $RESOLVERS; do header+=" | $res"; rule+="|---:"; done
echo "$header |"
echo "$rule|"
for name in $names all; do
    row="| \`$name\`" show=0
    [[ $name == all ]] && row="| **all**"
    for res in $RESOLVERS; do
        per=$(awk -v n="${COUNT[$res/$name]:-0}" -v a="${COUNT[$res/answered]:-1}" 'BEGIN{printf "%.3f", n / a}')
        awk -v p="$per" 'BEGIN{exit !(p >= 0.005)}' && show=1
        row+=" | $per"
    done
    ((show)) && echo "$row |"
done
row="| answers counted"
for res in $RESOLVERS; do row+=" | ${COUNT[$res/answered]:-0}"; done
echo "$row |"

#!/usr/bin/env bash
# What dnstap costs per cache hit, end to end (issue 19): Picket answering cache hits to dnsperf
# with `--dnstap unix:SOCK` to Debian's `fstrm_capture` (fstrm-bin) against the same Picket
# without dnstap. Method and figures: benches/README.md (`cargo bench --bench querylog` measures
# the same in-process, per writer thread).
#
#   benches/dnstap.sh                           # BENCH_SECONDS=10 ROUNDS=5
#   PICKET_BIN=/path/to/picket benches/dnstap.sh
#
# Each round starts Picket twice (off, then on; on first in even rounds), one worker pinned to
# one core; dnsperf and fstrm_capture share the other. fstrm_capture writes the frames to
# /dev/null: the collector's disk is not what is measured. Picket's CPU (all its threads: the
# worker and the dnstap writer) per answered query, dnsperf's queries/s, medians, and the
# median of the per-round on/off ratios. The dnstap messages received are checked
# (dnstap_frames_pct: frames written by fstrm_capture over two per answered query); a run
# whose collector got less is noted (messages dropped by the bounded queue are counted by
# Picket, never waited for).
#
# Results: bench-out/dnstap/results.md (and stdout); raw lines in raw.tsv beside it.
set -euo pipefail

export BENCH_OUT=${BENCH_OUT:-$(cd "$(dirname "$0")/.." && pwd)/bench-out/dnstap}
export NSD_PORT=${NSD_PORT:-28453} PICKET_PORT=${PICKET_PORT:-28455}
export BLOCKLIST_SIZE=${BLOCKLIST_SIZE:-1000}
export ROUNDS=${ROUNDS:-5}
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TAP_PID=
trap 'stop_pid "$TAP_PID"; cleanup' EXIT

start_collector() { # socket
    rm -f "$1"
    taskset -c "$LOAD_CPU" fstrm_capture -t protobuf:dnstap.Dnstap -u "$1" -w /dev/null \
        >"$LOGS/fstrm_capture.log" 2>&1 &
    TAP_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S $1 ]] && return 0
        sleep 0.05
    done
    die "fstrm_capture did not create $1; see $LOGS/fstrm_capture.log"
}

# Every answered query (warm-up and max run) is two dnstap messages, CLIENT_QUERY and
# CLIENT_RESPONSE: the share of them fstrm_capture wrote ("wrote N frames" when it closes).
check_frames() { # round tag
    local frames queries pct
    frames=$(sed -n 's/.*wrote \([0-9]*\) frames.*/\1/p' "$LOGS/$2.fstrm.txt" | tail -n1)
    queries=$(($(dp_num "$LOGS/$2.warm.txt" "Queries completed:") + $(dp_num "$LOGS/$2.max.txt" "Queries completed:")))
    pct=$(awk -v f="${frames:-0}" -v q="$queries" 'BEGIN{printf "%.2f", q ? f * 100 / (2 * q) : 0}')
    record "$1" on hits dnstap_frames_pct "$pct"
    awk -v p="$pct" 'BEGIN{exit !(p < 99.9)}' &&
        note "dnstap round $1: the collector got $pct% of the expected messages; see $LOGS/$2.fstrm.txt and picket_dnstap_* metrics"
    return 0
}

run_one() { # round off|on
    local r=$1 how=$2 tag=r$1-dnstap-$2 sock=$OUT/tap.sock base=$PICKET_EXTRA_ARGS
    if [[ $how == on ]]; then
        start_collector "$sock"
        PICKET_EXTRA_ARGS="$base --dnstap unix:$sock --dnstap-identity bench"
    fi
    if start_resolver picket hits "$tag"; then
        warm "$tag"
        # hits: the workload the query log's figures are for
        measure_max "$r" "$how" hits "$DATA/hits.txt" "$tag"
        record_hwm "$r" "$how" hits
        stop_resolver
    else
        note "$START_ERR (round $r)"
    fi
    PICKET_EXTRA_ARGS=$base
    if [[ $how == on ]]; then
        stop_pid "$TAP_PID"
        TAP_PID=
        mv "$LOGS/fstrm_capture.log" "$LOGS/$tag.fstrm.txt"
        check_frames "$r" "$tag"
    fi
}

main() {
    local t_start=$SECONDS r how
    local -a order
    ensure_deps
    command -v fstrm_capture >/dev/null 2>&1 || die "fstrm_capture is missing: apt-get install fstrm-bin"
    begin_run
    find_picket
    [[ $PICKET_OK == 1 ]] || die "no picket binary"
    gen_data
    start_nsd
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(off on); else order=(on off); fi
        for how in "${order[@]}"; do
            log "round $r/$ROUNDS: dnstap $how"
            run_one "$r" "$how"
        done
    done
    stop_pid "$NSD_PID"
    NSD_PID=
    write_meta "$((SECONDS - t_start))" >"$OUT/meta.txt"
    SUMMARY_COLUMNS="off=dnstap off,on=dnstap on" \
        python3 "$BENCHES/summarize.py" "$RAW" "$OUT/meta.txt" "$NOTES" >"$OUT/results.md"
    cat "$OUT/results.md"
    log "done in $((SECONDS - t_start))s; results in $OUT/results.md"
}

main "$@"

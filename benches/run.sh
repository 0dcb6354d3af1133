#!/usr/bin/env bash
# Picket vs Unbound benchmark harness (issue 8).  Method: benches/README.md.
#
#   benches/run.sh                      # defaults: BENCH_SECONDS=10 ROUNDS=3
#   BENCH_SECONDS=5 ROUNDS=1 benches/run.sh
#   PICKET_BIN=/path/to/picket RESOLVERS="picket unbound" benches/run.sh
#
# Results: markdown table on stdout and in bench-out/results.md; raw numbers
# in bench-out/raw.tsv; logs and dnsperf outputs in bench-out/logs/.
set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- workloads -------------------------------------------------------------------
wl_hits() { # round res
    local tag=r$1-$2-hits
    start_resolver "$2" hits "$tag" || return 1
    warm "$tag"
    measure_max "$1" "$2" hits "$DATA/hits.txt" "$tag" &&
        measure_latency "$1" "$2" hits "$DATA/hits.txt" "$tag"
    record_hwm "$1" "$2" hits
    stop_resolver
}

wl_miss() { # round res: every name asked once; fresh process for each pass
    local tag=r$1-$2-miss ok=0
    start_resolver "$2" miss "$tag" || return 1
    measure_max "$1" "$2" miss "$DATA/miss.txt" "$tag" -n 1 && ok=1
    record_hwm "$1" "$2" miss
    stop_resolver
    ((ok)) || return 0
    start_resolver "$2" miss "$tag-lat" || { note "$START_ERR"; return 0; }
    measure_latency "$1" "$2" miss "$DATA/miss.txt" "$tag" -n 1
    stop_resolver
}

wl_block() { # round res: (4) list load, then (3) the 50/50 mix
    local tag=r$1-$2-block
    start_resolver "$2" block "$tag" || return 1
    record "$1" "$2" load load_s "$LOAD_S"
    record "$1" "$2" load rss_mib "$(awk -v k="$(status_kib "$RES_PID" VmRSS)" 'BEGIN{printf "%.1f", k / 1024}')"
    record "$1" "$2" load hwm_mib "$(awk -v k="$(status_kib "$RES_PID" VmHWM)" 'BEGIN{printf "%.1f", k / 1024}')"
    warm "$tag"
    measure_max "$1" "$2" block "$DATA/mix.txt" "$tag" &&
        measure_latency "$1" "$2" block "$DATA/mix.txt" "$tag"
    record_hwm "$1" "$2" block
    stop_resolver
}

# ---- main -----------------------------------------------------------------------------
main() {
    ensure_deps
    begin_run
    local t_start=$SECONDS r wl res
    local -a order
    [[ " $RESOLVERS " == *" picket "* ]] && find_picket
    gen_data
    start_nsd

    for ((r = 1; r <= ROUNDS; r++)); do
        # alternate who goes first so slow drifts in machine load cancel out
        if ((r % 2)); then order=(unbound picket); else order=(picket unbound); fi
        for wl in $WORKLOADS; do
            for res in "${order[@]}"; do
                [[ " $RESOLVERS " == *" $res "* ]] || continue
                [[ $res == picket && $PICKET_OK == 0 ]] && continue
                [[ -n ${SKIP[$res/$wl]:-} ]] && continue
                log "round $r/$ROUNDS: $res $wl"
                START_ERR=
                if ! "wl_$wl" "$r" "$res"; then
                    SKIP[$res/$wl]=1
                    note "${START_ERR:-$res/$wl failed}; later rounds skip it"
                fi
            done
        done
    done
    stop_pid "$NSD_PID"
    NSD_PID=

    write_meta "$((SECONDS - t_start))" >"$OUT/meta.txt"
    python3 "$BENCHES/summarize.py" "$RAW" "$OUT/meta.txt" "$NOTES" >"$OUT/results.md"
    cat "$OUT/results.md"
    log "done in $((SECONDS - t_start))s; results in $OUT/results.md"
}

main "$@"

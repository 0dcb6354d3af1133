# Shared by the bench scripts (sourced): NSD as the upstream, latency percentiles, and
# (profile.sh, prefetch.sh) process handling: those set PIDS=() and LOAD_CPU first.

# stop PID: TERM, then wait (up to 10 s) so that the next start finds its ports free
stop() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; }

# ready PORT NAME RCODE: waits (up to a minute) until NAME/A gets RCODE on 127.0.0.1:PORT
ready() {
    for _ in $(seq 1200); do
        dig @127.0.0.1 -p "$1" +time=1 +tries=1 "$2" A 2>/dev/null | grep -q "status: $3" && return 0
        sleep 0.05
    done
    echo "127.0.0.1:$1 did not answer $2 with $3" >&2
    return 1
}

# shellcheck source=benches/nsd.sh
source "$(dirname "${BASH_SOURCE[0]}")/nsd.sh" # write_nsd_conf

# start_nsd DIR PORT ZONE ZONESDIR PROBE: NSD as write_nsd_conf sets it up, pinned to
# LOAD_CPU; returns once PROBE/A answers NOERROR.
start_nsd() {
    write_nsd_conf "$1" "$2" "$3" "$4"
    taskset -c "$LOAD_CPU" nsd -d -c "$1/nsd.conf" >"$1/nsd.out" 2>&1 &
    PIDS+=($!)
    ready "$2" "$5" NOERROR
}

# percentiles FILE LOST Q...: the Q-quantiles (e.g. 0.99) in ms of the per-query latencies of a
# `dnsperf -v` output, with LOST lost queries counted as infinitely slow ("inf").
percentiles() {
    local file=$1 lost=$2
    shift 2
    awk '/^> / {print $NF}' "$file" | sort -g | awk -v lost="${lost:-0}" -v qs="$*" '
        {v[NR] = $1}
        END {
            n = NR + lost
            m = split(qs, q, " ")
            if (NR == 0) { for (i = 1; i <= m; i++) out = out (i > 1 ? " " : "") "nan"; print out; exit }
            for (i = 1; i <= m; i++) {
                k = int(q[i] * n + 0.999999); if (k < 1) k = 1
                out = out (i > 1 ? " " : "") (k > NR ? "inf" : sprintf("%.3f", v[k] * 1000))
            }
            print out
        }'
}

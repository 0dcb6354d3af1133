#!/usr/bin/env bash
# Encrypted transports (issue 18): Picket against Unbound's own DoT and DoH listeners, and a
# forwarded miss over a warm DoT upstream connection against one over UDP. Method and figures:
# benches/README.md.
#
#   benches/encrypted.sh                        # BENCH_SECONDS=10 ROUNDS=3
#   PICKET_BIN=/path/to/picket ROUNDS=5 benches/encrypted.sh
#   PARTS=serve benches/encrypted.sh            # only the listeners ("forward": only upstreams)
#
# serve    cache hits (the 10k h* names, warmed over UDP) with dnsperf over UDP and `-m dot`,
#          and over DoH (GET /dns-query?dns=) with h2load (nghttp2-client); DNSPERF_DOH=1 also
#          runs dnsperf's own DoH client, as `doh-dnsperf` (see benches/README.md).
#          Each resolver pinned to one core with one thread, the client on the other, Unbound
#          and Picket alternating first round by round.
# forward  Picket forwarding every query (the m* names, each once) to an Unbound that forwards
#          to NSD, once with `--upstream 127.0.0.1:PORT` (UDP) and once with `--upstream
#          tls://127.0.0.1:PORT#NAME` (DoT, the connection opened by a first query before the
#          run); that Unbound is restarted before each pass, so every query is a miss for it
#          too. Picket on one core; dnsperf, the upstream Unbound and NSD on the other.
#
# Results: bench-out/encrypted/results.md (and stdout); raw lines in raw.tsv beside it.
set -euo pipefail

# Ports and output of its own, clear of run.sh's (253xx) and ab.sh's (263xx).
export BENCH_OUT=${BENCH_OUT:-$(cd "$(dirname "$0")/.." && pwd)/bench-out/encrypted}
export NSD_PORT=${NSD_PORT:-28353} UNBOUND_PORT=${UNBOUND_PORT:-28354} PICKET_PORT=${PICKET_PORT:-28355}
# Only the hit and miss names are needed: a small list keeps data generation short.
export BLOCKLIST_SIZE=${BLOCKLIST_SIZE:-1000}
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARTS=${PARTS:-"serve forward"}
DOT_PORT=${DOT_PORT:-28356}         # the resolver under test: DoT
DOH_PORT=${DOH_PORT:-28357}         # the resolver under test: DoH
UP_PORT=${UP_PORT:-28358}           # upstream Unbound of "forward": plain DNS
UP_DOT_PORT=${UP_DOT_PORT:-28359}   # upstream Unbound of "forward": DoT
DNSPERF_DOH=${DNSPERF_DOH:-0}       # 1: also run `dnsperf -m doh` (workload doh-dnsperf)
TLS_NAME=dns.bench.test
CERTS=$OUT/certs
UP_PID=
trap 'stop_pid "$UP_PID"; cleanup' EXIT

# Unbound's DoT and DoH listeners (DoH needs a build with libnghttp2: `unbound -V`).
unbound_tls_conf() { # dot_port [doh_port]
    printf '  interface: 127.0.0.1@%s\n  tls-port: %s\n' "$1" "$1"
    [[ -n ${2:-} ]] && printf '  interface: 127.0.0.1@%s\n  https-port: %s\n  http-endpoint: "/dns-query"\n' "$2" "$2"
    printf '  tls-service-key: "%s"\n  tls-service-pem: "%s"\n' "$CERTS/server.key" "$CERTS/server.pem"
    # one connection per dnsperf client, and Picket's upstream connection: room for all
    printf '  incoming-num-tcp: 64\n'
}

# ---- serve: cache hits over UDP, DoT and DoH ------------------------------------------
# The hit names as DoH GET URIs (RFC 8484 `?dns=`, ID 0) for h2load, which cycles through them.
doh_uris() { # port -> file
    local f=$OUT/doh-uris-$1.txt
    [[ -s $f ]] || python3 - "$DATA/hits.txt" "$1" >"$f" <<'PY'
import base64, struct, sys
port = sys.argv[2]
for line in open(sys.argv[1]):
    name, qtype = line.split()
    wire = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
    wire += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    wire += struct.pack(">HH", {"A": 1, "AAAA": 28}[qtype], 1)
    q = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    print(f"https://127.0.0.1:{port}/dns-query?dns={q}")
PY
    printf '%s' "$f"
}

# DoH with h2load: the same connections and queries in flight as dnsperf (-c, -q), cache hits
# by GET. Records what measure_max records (a 2xx counts as answered; h2load does not read
# the DNS message, the UDP and DoT runs check the rcodes of the same names).
measure_h2load() { # round res port tag
    local r=$1 res=$2 port=$3 tag=$4 c0 c1 done ok failed qps
    c0=$(cpu_ticks "$RES_PID")
    taskset -c "$LOAD_CPU" h2load -c "$DNSPERF_CLIENTS" -m $((DNSPERF_OUTSTANDING / DNSPERF_CLIENTS)) \
        -D "$BENCH_SECONDS" -i "$(doh_uris "$port")" -H 'accept: application/dns-message' \
        >"$LOGS/$tag.h2load.txt" 2>&1 || true
    c1=$(cpu_ticks "$RES_PID")
    read -r done ok failed <<<"$(awk '/^requests:/ {print $6, $8, $10}' "$LOGS/$tag.h2load.txt")"
    qps=$(awk '/^finished in/ {print $4}' "$LOGS/$tag.h2load.txt")
    if [[ -z $ok || $ok == 0 ]]; then
        note "$res/doh round $r: h2load got no answer; see $LOGS/$tag.h2load.txt"
        return 1
    fi
    record "$r" "$res" doh qps "$qps"
    record "$r" "$res" doh us_per_q "$(awk -v d="$((c1 - c0))" -v t="$CLK_TCK" -v n="$ok" 'BEGIN{printf "%.3f", d / t * 1e6 / n}')"
    record "$r" "$res" doh cpu_busy "$(awk -v d="$((c1 - c0))" -v t="$CLK_TCK" -v s="$BENCH_SECONDS" 'BEGIN{printf "%.1f", d / t / s * 100}')"
    record "$r" "$res" doh lost_pct "$(awk -v f="$((done - ok))" -v n="$done" 'BEGIN{printf "%.3f", n ? f * 100 / n : 0}')"
}

serve_round() { # round res
    local r=$1 res=$2 tag=r$1-$2-serve dot=$DOT_PORT doh=$DOH_PORT
    [[ $res == picket ]] && dot=$((DOT_PORT + 100)) doh=$((DOH_PORT + 100))
    start_resolver "$res" hits "$tag" || return 1
    warm "$tag"
    measure_max "$r" "$res" udp "$DATA/hits.txt" "$tag-udp"
    RES_PORT=$dot measure_max "$r" "$res" dot "$DATA/hits.txt" "$tag-dot" -m dot
    measure_h2load "$r" "$res" "$doh" "$tag-doh"
    # dnsperf's own DoH client, kept for comparison (see benches/README.md: it loses
    # answers from some servers, so its figures are not the ones reported)
    ((DNSPERF_DOH)) && RES_PORT=$doh measure_max "$r" "$res" doh-dnsperf "$DATA/hits.txt" \
        "$tag-doh-dnsperf" -m doh -O "doh-uri=https://127.0.0.1:$doh/dns-query"
    record_hwm "$r" "$res" doh
    stop_resolver
}

serve_part() {
    local r res
    local -a order
    # Picket's listeners are on DOT_PORT+100 and DOH_PORT+100, Unbound's on DOT_PORT/DOH_PORT.
    UNBOUND_EXTRA_CONF=$(unbound_tls_conf "$DOT_PORT" "$DOH_PORT")
    PICKET_EXTRA_ARGS="--dot 127.0.0.1:$((DOT_PORT + 100)) --doh 127.0.0.1:$((DOH_PORT + 100)) --tls-cert $CERTS/server.pem --tls-key $CERTS/server.key"
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(unbound picket); else order=(picket unbound); fi
        for res in "${order[@]}"; do
            [[ $res == picket && $PICKET_OK == 0 ]] && continue
            log "round $r/$ROUNDS: $res udp, dot, doh (cache hits)"
            START_ERR=
            serve_round "$r" "$res" || note "${START_ERR:-$res serve failed} (round $r)"
        done
    done
    UNBOUND_EXTRA_CONF=
}

# ---- forward: a miss over a warm DoT upstream connection against UDP ---------------
start_upstream() { # tag
    local conf
    conf=$(UNBOUND_PORT=$UP_PORT UNBOUND_EXTRA_CONF=$(unbound_tls_conf "$UP_DOT_PORT") \
        write_unbound_conf miss upstream)
    taskset -c "$NSD_CPU" unbound -d -c "$conf" >"$LOGS/$1.upstream.log" 2>&1 &
    UP_PID=$!
    wait_ready "$UP_PID" "$UP_PORT" h0.bench.test. NOERROR 60 ||
        die "the upstream Unbound did not start; see $LOGS/$1.upstream.log"
}

forward_round() { # round how(udp|dot)
    local r=$1 how=$2 tag=r$1-fwd-$2 ok=0
    start_upstream "$tag"
    PICKET_UPSTREAM=127.0.0.1:$UP_PORT
    [[ $how == dot ]] && PICKET_UPSTREAM=tls://127.0.0.1:$UP_DOT_PORT#$TLS_NAME
    PICKET_EXTRA_ARGS="--ca-file $CERTS/ca.pem"
    # start_resolver's probe (h0) is the first forwarded query: it opens the DoT connection.
    if start_resolver picket hits "$tag"; then
        measure_max "$r" "$how" fwd "$DATA/miss.txt" "$tag" -n 1 && ok=1
        stop_resolver
    else
        note "$START_ERR (round $r)"
    fi
    stop_pid "$UP_PID"
    UP_PID=
    PICKET_UPSTREAM=
    ((ok))
}

forward_part() {
    local r how
    local -a order
    [[ $PICKET_OK == 1 ]] || return 0
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(udp dot); else order=(dot udp); fi
        for how in "${order[@]}"; do
            log "round $r/$ROUNDS: picket forwarding misses over $how"
            forward_round "$r" "$how" || note "forwarding over $how failed in round $r"
        done
    done
}

# ---- main -------------------------------------------------------------------------------
main() {
    local t_start=$SECONDS
    ensure_deps
    command -v h2load >/dev/null 2>&1 || die "h2load is missing: apt-get install nghttp2-client"
    command -v openssl >/dev/null 2>&1 || die "openssl is missing: apt-get install openssl"
    unbound -V 2>/dev/null | grep -q -- --with-libnghttp2 ||
        note "this unbound is built without libnghttp2: its DoH listener will not answer"
    begin_run
    find_picket
    make_test_certs "$CERTS" "$TLS_NAME"
    gen_data
    start_nsd
    [[ " $PARTS " == *" serve "* ]] && serve_part
    [[ " $PARTS " == *" forward "* ]] && forward_part
    stop_pid "$NSD_PID"
    NSD_PID=
    write_meta "$((SECONDS - t_start))" >"$OUT/meta.txt"
    {
        python3 "$BENCHES/summarize.py" "$RAW" "$OUT/meta.txt" "$NOTES"
        echo
        SUMMARY_COLUMNS="udp=upstream over UDP,dot=upstream over DoT" \
            python3 "$BENCHES/summarize.py" "$RAW" "$OUT/meta.txt" /dev/null
    } >"$OUT/results.md"
    cat "$OUT/results.md"
    log "done in $((SECONDS - t_start))s; results in $OUT/results.md"
}

main "$@"

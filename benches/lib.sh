#!/usr/bin/env bash
# Shell functions shared by the benchmark scripts (run.sh, ab.sh through run.sh, encrypted.sh,
# dnstap.sh, reload_rss.sh, profile.sh, prefetch.sh, recursion.sh, fake-picket.sh): settings,
# process bookkeeping, readiness polling, CPU accounting, data generation, NSD, Unbound, the two
# resolvers under test, dnsperf runs and their parsing, latency percentiles, a throwaway CA.
# Sourced, never run; a script sets its own defaults (ports, ...) before sourcing, since every
# setting is `${VAR:-default}`, and its own output layout (OUT, DATA, LOGS) after sourcing if it
# has one.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$ROOT/benches

# ---- settings (all overridable from the environment) -------------------------
BENCH_SECONDS=${BENCH_SECONDS:-10}          # length of each max-throughput run
LAT_SECONDS=${LAT_SECONDS:-$(((BENCH_SECONDS * 2 + 4) / 5))} # length of each half-load run
ROUNDS=${ROUNDS:-3}                         # interleaved rounds -> medians
WORKLOADS=${WORKLOADS:-"hits miss block"}   # block also measures the list load (4)
RESOLVERS=${RESOLVERS:-"unbound picket"}
OUT=${BENCH_OUT:-$ROOT/bench-out}
PICKET_BIN=${PICKET_BIN:-}
PICKET_CACHE_SIZE=${PICKET_CACHE_SIZE-512MiB} # set empty to omit --cache-size
THREADS=${THREADS:-1}                       # Picket --threads and Unbound num-threads (give RESOLVER_CPU as many CPUs)
PICKET_EXTRA_ARGS=${PICKET_EXTRA_ARGS:-}      # word-split, appended to `picket serve`
LISTEN_IP=${LISTEN_IP:-127.0.0.1}           # both resolvers listen here (0.0.0.0: wildcard, answers from each query's address)
PICKET_POLICIES=${PICKET_POLICIES-$ROOT/policies/examples} # empty: the neutral built-in policy
PICKET_UPSTREAM=${PICKET_UPSTREAM:-}          # --upstream of Picket (default: NSD over UDP)
BUILD_PICKET=${BUILD_PICKET:-1}             # cargo build --release if the default binary is missing
RESOLVER_CPU=${RESOLVER_CPU:-1}             # the resolver under test (one worker thread)
LOAD_CPU=${LOAD_CPU:-0}                     # dnsperf
NSD_CPU=${NSD_CPU:-0}                       # authoritative upstream (busy only in "miss")
NSD_PORT=${NSD_PORT:-25353}
UNBOUND_PORT=${UNBOUND_PORT:-25354}
PICKET_PORT=${PICKET_PORT:-25355}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}       # dnsperf -c
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-200} # dnsperf -q
DNSPERF_TIMEOUT=${DNSPERF_TIMEOUT:-2}       # dnsperf -t (s): slower answers count as lost
DNSPERF_ARGS=${DNSPERF_ARGS:-}              # extra dnsperf args, word-split (e.g. "-e" for EDNS)
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-120}     # s to wait for a resolver to answer
HIT_NAMES=${HIT_NAMES:-10000}
MISS_NAMES=${MISS_NAMES:-200000}
BLOCKLIST_SIZE=${BLOCKLIST_SIZE:-1000000}

DATA=$OUT/data
LOGS=$OUT/logs
RAW=$OUT/raw.tsv
NOTES=$OUT/notes.txt

LOG_TAG=${LOG_TAG:-bench}                   # the prefix of log lines
log() { printf '[%s %(%H:%M:%S)T] %s\n' "$LOG_TAG" -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---- dependencies ------------------------------------------------------------
ensure_deps() {
    local -a need=()
    PATH=$PATH:/usr/sbin:/sbin
    command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
    command -v unbound >/dev/null 2>&1 || [[ -x /usr/sbin/unbound ]] || need+=(unbound)
    command -v nsd >/dev/null 2>&1 || [[ -x /usr/sbin/nsd ]] || need+=(nsd)
    command -v dig >/dev/null 2>&1 || need+=(dnsutils)
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v ss >/dev/null 2>&1 || need+=(iproute2)
    if ((${#need[@]})); then
        [[ $(id -u) == 0 ]] || die "missing packages (${need[*]}); run as root or install them"
        command -v apt-get >/dev/null 2>&1 || die "missing packages (${need[*]}) and no apt-get"
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# ---- raw result recording ----------------------------------------------------
# raw.tsv columns: round resolver workload metric value
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RAW"; }
note() { log "NOTE: $*"; printf '%s\n' "$*" >>"$NOTES"; }

# ---- processes we started (only these are ever signalled) --------------------
# NSD_PID and RES_PID: the upstream and the resolver under test; PIDS: any other process a
# script starts (it appends to it). cleanup ends them all when the script exits.
NSD_PID=
RES_PID=
PIDS=()
# stop_pid PID: TERM, then up to 10 s for it to exit (so that the next start finds its ports
# free), then KILL; PID leaves PIDS.
stop_pid() {
    local pid=$1 i keep=() p
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
cleanup() {
    stop_pid "$RES_PID"
    RES_PID=
    stop_pid "$NSD_PID"
    NSD_PID=
    while ((${#PIDS[@]})); do stop_pid "${PIDS[0]}"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

# dig status (NOERROR, NXDOMAIN, ...) or "none"
dig_status() { # port name
    local s
    s=$(dig @127.0.0.1 -p "$1" +time=1 +tries=1 +noall +comments "$2" A 2>/dev/null |
        sed -n 's/.*status: \([A-Z]*\),.*/\1/p' | head -n1) || true
    printf '%s' "${s:-none}"
}

now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }

# Poll with dig until `name` gets rcode `want`. 0 = ready, 1 = timeout, 2 = exited.
wait_ready() { # pid port name want timeout_s
    local pid=$1 port=$2 name=$3 want=$4 deadline=$((SECONDS + $5)) st
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 2
        st=$(dig_status "$port" "$name")
        [[ $st == "$want" ]] && return 0
        sleep 0.05
    done
    return 1
}

cpu_ticks() { # pid -> utime+stime in clock ticks (includes exited threads)
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }                         # fields from 3 (state) on
    awk '{print $12 + $13}' <<<"$rest"        # fields 14 (utime) and 15 (stime)
}
# "busy total" jiffies of one CPU from /proc/stat (busy = all but idle and iowait)
core_ticks() { # cpu
    awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

# ---- data --------------------------------------------------------------------
gen_data() {
    local stamp
    stamp="hits=$HIT_NAMES miss=$MISS_NAMES list=$BLOCKLIST_SIZE gen=$(cksum <"$BENCHES/gen_data.py")"
    if [[ -f $DATA/stamp && $(<"$DATA/stamp") == "$stamp" ]]; then
        log "data up to date in $DATA"
        return
    fi
    log "generating data in $DATA"
    rm -rf "$DATA"
    python3 "$BENCHES/gen_data.py" "$DATA" --hit-names "$HIT_NAMES" \
        --miss-names "$MISS_NAMES" --blocklist-size "$BLOCKLIST_SIZE"
    printf '%s' "$stamp" >"$DATA/stamp"
}

# ---- NSD (authoritative upstream) --------------------------------------------
# write_nsd_conf DIR ADDRESS PORT ZONESDIR ZONE FILE [ZONE FILE ...]: DIR/nsd.conf for one NSD
# process serving each ZONE from FILE (relative to ZONESDIR, or absolute) on ADDRESS:PORT.
# Rate limiting off: NSD's default RRL (200/s) would throttle a resolver that sends it
# everything from one address.
write_nsd_conf() {
    local dir=$1 address=$2 port=$3 zonesdir=$4
    shift 4
    mkdir -p "$dir"
    {
        cat <<CONF
server:
  ip-address: $address@$port
  port: $port
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$zonesdir"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  xfrdir: "$dir"
  pidfile: "$dir/nsd.pid"
  logfile: "$dir/nsd.log"
  verbosity: 0
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
CONF
        while (($#)); do
            printf 'zone:\n  name: "%s"\n  zonefile: "%s"\n' "$1" "$2"
            shift 2
        done
    } >"$dir/nsd.conf"
    rm -f "$dir/zone.list" "$dir/xfrd.state"
}

# start_nsd [DIR PORT ZONE ZONESDIR PROBE]: NSD on 127.0.0.1:PORT serving ZONE from
# ZONESDIR/ZONE.zone, its files in DIR, its output in LOGS/nsd.out, pinned to NSD_CPU; sets
# NSD_PID and returns once PROBE/A gets NOERROR. Without arguments: run.sh's bench.test from
# DATA on NSD_PORT.
start_nsd() {
    local dir=${1:-$OUT/nsd} port=${2:-$NSD_PORT} zone=${3:-bench.test} zonesdir=${4:-$DATA}
    local probe=${5:-h0.bench.test.}
    write_nsd_conf "$dir" 127.0.0.1 "$port" "$zonesdir" "$zone." "$zone.zone"
    port_busy "$port" && die "udp port $port already in use (NSD_PORT)"
    log "starting nsd on 127.0.0.1:$port (cpu $NSD_CPU)"
    taskset -c "$NSD_CPU" nsd -d -c "$dir/nsd.conf" >"$LOGS/nsd.out" 2>&1 &
    NSD_PID=$!
    wait_ready "$NSD_PID" "$port" "$probe" NOERROR 120 ||
        die "nsd did not start (see $dir/nsd.log, $LOGS/nsd.out)"
}

# ---- resolvers ----------------------------------------------------------------
# unbound_server_conf PORT THREADS: the `server:` lines every bench Unbound starts with: on
# LISTEN_IP:PORT for loopback clients (on a wildcard, answering from each query's address,
# as Picket does), run as started (no chroot, no user switch, no pid file), logging quietly
# to stderr, allowed to ask servers on loopback.
unbound_server_conf() {
    local automatic=no
    [[ $LISTEN_IP == 0.0.0.0 || $LISTEN_IP == :: ]] && automatic=yes
    cat <<EOF
server:
  interface: $LISTEN_IP
  interface-automatic: $automatic
  port: $1
  num-threads: $2
  username: ""
  chroot: ""
  directory: "$OUT"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
EOF
}

# UNBOUND_EXTRA_CONF: more `server:` lines (indented), e.g. the DoT/DoH listeners of
# benches/encrypted.sh; UNBOUND_PORT: its plain DNS port.
write_unbound_conf() { # workload [name] -> path
    local conf=$OUT/unbound-${2:-$1}.conf include=""
    [[ $1 == block ]] && include="  include: \"$DATA/unbound-blocklist.conf\""
    {
        unbound_server_conf "$UNBOUND_PORT" "$THREADS"
        cat <<EOF
  do-ip6: no
  do-daemonize: no
  # plain forwarder: no validation, no prefetch, big caches, no rate limits
  module-config: "iterator"
  prefetch: no
  prefetch-key: no
  serve-expired: no
  qname-minimisation: no
  msg-cache-size: 256m
  rrset-cache-size: 512m
  msg-cache-slabs: 1
  rrset-cache-slabs: 1
  infra-cache-slabs: 1
  key-cache-slabs: 1
  num-queries-per-thread: 2048
  outgoing-range: 4096
  ratelimit: 0
  ip-ratelimit: 0
  unwanted-reply-threshold: 0
  statistics-interval: 0
  # test. is an RFC 6761 default local zone in Unbound; serve it via the forwarder
  local-zone: "test." nodefault
$include
${UNBOUND_EXTRA_CONF:-}
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$NSD_PORT
EOF
    } >"$conf"
    printf '%s' "$conf"
}

PICKET_OK=1
declare -A SKIP=()

resolver_port() { if [[ $1 == unbound ]]; then echo "$UNBOUND_PORT"; else echo "$PICKET_PORT"; fi; }

# start_resolver NAME WORKLOAD TAG -> sets RES_PID, RES_PORT, LOAD_S; on failure
# returns 1 with the reason in START_ERR
start_resolver() {
    local res=$1 wl=$2 tag=$3 probe want t0 t1
    local -a cmd
    RES_PORT=$(resolver_port "$res")
    port_busy "$RES_PORT" && die "udp port $RES_PORT already in use"
    if [[ $res == unbound ]]; then
        cmd=(unbound -d -c "$(write_unbound_conf "$wl")")
    else
        # The example policies: an organization for 127.0.0.0/8 with rules and lists, and a
        # response-phase rebinding rule on every answer (the bench zone answers 198.18/15).
        local listen=$LISTEN_IP:$RES_PORT
        [[ $LISTEN_IP == *:* ]] && listen=[$LISTEN_IP]:$RES_PORT
        cmd=("$PICKET_BIN" serve --listen "$listen"
            --upstream "${PICKET_UPSTREAM:-127.0.0.1:$NSD_PORT}" --threads "$THREADS" --dnssec off)
        [[ -n $PICKET_POLICIES ]] && cmd+=(--policies "$PICKET_POLICIES")
        [[ -n $PICKET_CACHE_SIZE ]] && cmd+=(--cache-size "$PICKET_CACHE_SIZE")
        [[ $wl == block ]] && cmd+=(--blocklist "$DATA/blocklist.txt")
        # shellcheck disable=SC2206 # deliberate word splitting of extra args
        [[ -n $PICKET_EXTRA_ARGS ]] && cmd+=($PICKET_EXTRA_ARGS)
    fi
    if [[ $wl == block ]]; then
        probe=$(<"$DATA/blocked-probe.txt").
        want=NXDOMAIN
    else
        probe=h0.bench.test.
        want=NOERROR
    fi
    printf '%q ' "${cmd[@]}" >"$LOGS/$tag.cmd"
    t0=$(now)
    taskset -c "$RESOLVER_CPU" "${cmd[@]}" >"$LOGS/$tag.log" 2>&1 &
    RES_PID=$!
    local rc=0
    wait_ready "$RES_PID" "$RES_PORT" "$probe" "$want" "$STARTUP_TIMEOUT" || rc=$?
    if ((rc)); then
        t1=$(now)
        if ((rc == 2)); then
            START_ERR="$res/$wl: exited after $(elapsed "$t0" "$t1")s without answering $probe with $want; see $LOGS/$tag.log"
        else
            START_ERR="$res/$wl: did not answer $probe with $want within ${STARTUP_TIMEOUT}s (STARTUP_TIMEOUT); see $LOGS/$tag.log"
        fi
        stop_pid "$RES_PID"
        RES_PID=
        return 1
    fi
    t1=$(now)
    LOAD_S=$(elapsed "$t0" "$t1")
    return 0
}

stop_resolver() { stop_pid "$RES_PID"; RES_PID=; }

# ---- dnsperf -------------------------------------------------------------------
# dnsperf OUTFILE QUERYFILE [extra dnsperf args...]
dnsperf_run() {
    local out=$1 file=$2
    shift 2
    # shellcheck disable=SC2086 # DNSPERF_ARGS is deliberately word-split
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$RES_PORT" -d "$file" \
        -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING" -t "$DNSPERF_TIMEOUT" \
        $DNSPERF_ARGS "$@" >"$out" 2>&1 || true
}
dp_num() { # file label -> first number after label
    awk -v l="$2" 'i = index($0, l) {
        s = substr($0, i + length(l)); sub(/^[ \t]+/, "", s); split(s, a, /[ (]/); print a[1]; exit
    }' "$1"
}
dp_rcode_pct() { # file RCODE -> percentage of completed
    sed -n 's/.*Response codes://p' "$1" | tr ',' '\n' |
        awk -v r="$2" '$1 == r {gsub(/[()%]/, "", $3); print $3; f=1} END{if (!f) print 0}'
}
# percentiles FILE LOST Q...: the Q-quantiles (e.g. 0.99) in ms of the per-query latencies of a
# `dnsperf -v` output, with LOST lost queries counted as infinitely slow ("inf"), so heavy
# loss shows rather than a flattering tail.
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
# p50 and p99 latency (ms) from a `dnsperf -v` output
dp_percentiles() { percentiles "$1" "$(dp_num "$1" "Queries lost:")" 0.50 0.99; }

# Max-throughput run with CPU accounting.  Records qps, us_per_q, cpu_busy, lost.
measure_max() { # round res wl queryfile tag [extra dnsperf args]
    local round=$1 res=$2 wl=$3 file=$4 tag=$5 c0 c1 ncomp qps lost rt
    local rb0 rt0 rb1 rt1 lb0 lt0 lb1 lt1 cu cs cr TIMEFORMAT='%3U %3S %3R'
    shift 5
    read -r rb0 rt0 <<<"$(core_ticks "$RESOLVER_CPU")"
    read -r lb0 lt0 <<<"$(core_ticks "$LOAD_CPU")"
    c0=$(cpu_ticks "$RES_PID")
    { time dnsperf_run "$LOGS/$tag.max.txt" "$file" -l "$BENCH_SECONDS" "$@"; } 2>"$LOGS/$tag.max.time"
    c1=$(cpu_ticks "$RES_PID")
    read -r rb1 rt1 <<<"$(core_ticks "$RESOLVER_CPU")"
    read -r lb1 lt1 <<<"$(core_ticks "$LOAD_CPU")"
    read -r cu cs cr <"$LOGS/$tag.max.time"
    ncomp=$(dp_num "$LOGS/$tag.max.txt" "Queries completed:")
    qps=$(dp_num "$LOGS/$tag.max.txt" "Queries per second:")
    lost=$(dp_num "$LOGS/$tag.max.txt" "Queries lost:")
    rt=$(dp_num "$LOGS/$tag.max.txt" "Run time (s):")
    if [[ -z $ncomp || $ncomp == 0 ]]; then
        note "$res/$wl round $round: dnsperf completed no queries; see $LOGS/$tag.max.txt"
        return 1
    fi
    record "$round" "$res" "$wl" qps "$qps"
    record "$round" "$res" "$wl" us_per_q "$(awk -v d="$((c1 - c0))" -v t="$CLK_TCK" -v n="$ncomp" 'BEGIN{printf "%.3f", d / t * 1e6 / n}')"
    record "$round" "$res" "$wl" cpu_busy "$(awk -v d="$((c1 - c0))" -v t="$CLK_TCK" -v r="$rt" 'BEGIN{printf "%.1f", d / t / r * 100}')"
    # diagnostics for a shared box: how busy the client was, how busy its core
    # was in all, and how much of the resolver's core went to other processes
    record "$round" "$res" "$wl" client_cpu "$(awk -v u="$cu" -v s="$cs" -v r="$cr" 'BEGIN{printf "%.1f", (u + s) / r * 100}')"
    record "$round" "$res" "$wl" load_core_busy "$(awk -v b="$((lb1 - lb0))" -v t="$((lt1 - lt0))" 'BEGIN{printf "%.1f", t ? b / t * 100 : 0}')"
    record "$round" "$res" "$wl" resolver_core_other "$(awk -v b="$((rb1 - rb0))" -v t="$((rt1 - rt0))" -v d="$((c1 - c0))" 'BEGIN{v = t ? (b - d) / t * 100 : 0; printf "%.1f", v < 0 ? 0 : v}')"
    record "$round" "$res" "$wl" lost_pct "$(awk -v l="$lost" -v n="$ncomp" 'BEGIN{printf "%.3f", l * 100 / (l + n)}')"
    MAX_QPS=${qps%.*}
    check_rcodes "$round" "$res" "$wl" "$LOGS/$tag.max.txt"
}

measure_latency() { # round res wl queryfile tag [extra dnsperf args]
    local round=$1 res=$2 wl=$3 file=$4 tag=$5 rate p
    shift 5
    rate=${LAT_RATE:-$((MAX_QPS / 2))} # LAT_RATE: one fixed rate for both resolvers
    ((rate > 0)) || return 1
    dnsperf_run "$LOGS/$tag.lat.txt" "$file" -l "$LAT_SECONDS" -Q "$rate" -v "$@"
    read -r -a p <<<"$(dp_percentiles "$LOGS/$tag.lat.txt")"
    record "$round" "$res" "$wl" lat_rate "$rate"
    record "$round" "$res" "$wl" p50_ms "${p[0]}"
    record "$round" "$res" "$wl" p99_ms "${p[1]}"
    # keep the per-query lines out of bench-out: they are large
    sed -i '/^> /d' "$LOGS/$tag.lat.txt"
}

# Answers must be what the workload expects; a resolver that fails fast must
# not look fast.
check_rcodes() { # round res wl dnsperf-output
    local noerr nx ok=1
    noerr=$(dp_rcode_pct "$4" NOERROR)
    nx=$(dp_rcode_pct "$4" NXDOMAIN)
    case $3 in
    hits | miss | udp | dot | doh-dnsperf | fwd) awk -v a="$noerr" 'BEGIN{exit !(a >= 99.9)}' || ok=0 ;;
    block) awk -v a="$noerr" -v b="$nx" 'BEGIN{exit !(a >= 49 && a <= 51 && b >= 49 && b <= 51)}' || ok=0 ;;
    esac
    record "$1" "$2" "$3" noerror_pct "$noerr"
    record "$1" "$2" "$3" nxdomain_pct "$nx"
    ((ok)) || note "$2/$3 round $1: unexpected response codes (NOERROR $noerr%, NXDOMAIN $nx%); see $4"
}

record_hwm() { record "$1" "$2" "$3" hwm_mib "$(awk -v k="$(status_kib "$RES_PID" VmHWM)" 'BEGIN{printf "%.1f", k / 1024}')"; }

# warm the cache: one pass over the hit names, at full speed
warm() { # tag
    dnsperf_run "$LOGS/$1.warm.txt" "$DATA/hits.txt" -n 1
}

# ---- picket binary -----------------------------------------------------------------
find_picket() {
    if [[ -z $PICKET_BIN ]]; then
        PICKET_BIN=$ROOT/target/release/picket
        if [[ ! -x $PICKET_BIN && $BUILD_PICKET == 1 && -f $ROOT/Cargo.toml ]] &&
            command -v cargo >/dev/null 2>&1; then
            log "building picket (cargo build --release)"
            (cd "$ROOT" && cargo build --release >"$LOGS/cargo-build.log" 2>&1) ||
                note "picket: cargo build --release failed; see $LOGS/cargo-build.log"
        fi
    fi
    if [[ ! -x $PICKET_BIN ]]; then
        note "picket: no executable at $PICKET_BIN; Picket rows are n/a"
        PICKET_OK=0
    fi
}


# key=value lines describing the run, for summarize.py
write_meta() { # wall_seconds
    {
        echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host_cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "ncpu=$(nproc)"
        echo "kernel=$(uname -r)"
        echo "loadavg_start=$LOADAVG_START"
        echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "unbound=$(unbound -V 2>/dev/null | awk '/^Version/ {print $2; exit}')"
        echo "nsd=$(nsd -v 2>&1 | awk '/^NSD version/ {print $3; exit}')"
        echo "dnsperf=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2; exit}')"
        echo "picket_policies=${PICKET_POLICIES:-none (neutral default)} threads=$THREADS"
        echo "picket_bin=$([[ $PICKET_OK == 1 ]] && echo "$PICKET_BIN" || echo "n/a")"
        echo "git=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "bench_seconds=$BENCH_SECONDS"
        echo "lat_seconds=$LAT_SECONDS"
        echo "rounds=$ROUNDS"
        echo "cpus=resolver:$RESOLVER_CPU dnsperf:$LOAD_CPU nsd:$NSD_CPU"
        echo "dnsperf_args=-c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING -t $DNSPERF_TIMEOUT${DNSPERF_ARGS:+ $DNSPERF_ARGS}"
        echo "data=$HIT_NAMES hit names, $MISS_NAMES miss names, $BLOCKLIST_SIZE listed domains"
        echo "wall_s=$1"
    }
}

# A throwaway CA (DIR/ca.pem) and a server certificate it signed (DIR/server.pem, server.key)
# for NAME and 127.0.0.1, EC P-256, valid two days: for the DoT/DoH listeners and the HTTPS
# list server of the benches. Made once per directory.
make_test_certs() { # dir name
    local d=$1
    [[ -s $d/server.pem && -s $d/ca.pem ]] && return 0
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
        -addext basicConstraints=critical,CA:TRUE -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$2" >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
}

# A fresh output directory for a run: logs, raw results and notes emptied, load noted.
begin_run() {
    rm -rf "$LOGS"
    mkdir -p "$OUT" "$LOGS"
    : >"$RAW"
    : >"$NOTES"
    LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
}


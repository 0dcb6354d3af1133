#!/usr/bin/env bash
# Cache-miss throughput in recursive mode: Picket against Unbound, both
# iterating from the same fake hierarchy on loopback.
#
#   root  . on 127.0.0.10:53   (NSD)
#   test. on 127.0.0.11:53     (NSD)
#   bench.test on 127.0.0.12:53 (NSD, wildcard: every name exists)
#
# Every query is a new name under bench.test, so each one is a miss for the
# resolver and costs it at least the A query at the leaf (the root and TLD
# delegations stay cached; the name is one label below the known zone, so
# QNAME minimisation has nothing to hide). NSD's response rate
# limiting is off (rrl-ratelimit: 0), or it throttles exactly those probes.
#
# Needs root (port 53), nsd, unbound, dnsperf (Debian: nsd unbound dnsperf)
# and a release build of picket. Usage: benches/recursion.sh [NAMES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

NAMES=${1:-200000}
SECONDS_PER_RUN=${2:-10}
OUTSTANDING=${OUTSTANDING:-100}
PICKET=${PICKET:-${CARGO_TARGET_DIR:-target}/release/picket}
WORK=$(mktemp -d /tmp/picket-recursion-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$PICKET" ] || { echo "build picket first: cargo build --release" >&2; exit 1; }
for tool in nsd unbound dnsperf; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nsd unbound dnsperf)" >&2; exit 1; }
done

cat > "$WORK/root.zone" <<'EOF'
.                    86400 IN SOA a.root-servers.test. h.root.test. 1 1800 900 604800 86400
.                   518400 IN NS  a.root-servers.test.
a.root-servers.test. 518400 IN A  127.0.0.10
test.               172800 IN NS  ns1.test.
ns1.test.           172800 IN A   127.0.0.11
EOF
cat > "$WORK/test.zone" <<'EOF'
test.               86400 IN SOA ns1.test. h.test. 1 1800 900 604800 60
test.               86400 IN NS  ns1.test.
ns1.test.           86400 IN A   127.0.0.11
bench.test.         86400 IN NS  ns1.bench.test.
ns1.bench.test.     86400 IN A   127.0.0.12
EOF
cat > "$WORK/bench.zone" <<'EOF'
bench.test.         3600 IN SOA ns1.bench.test. h.bench.test. 1 7200 900 1209600 60
bench.test.         3600 IN NS  ns1.bench.test.
ns1.bench.test.     3600 IN A   127.0.0.12
*.bench.test.        300 IN A   192.0.2.1
EOF

start_nsd() { # ip zone-name file
  local dir="$WORK/nsd-$1"
  mkdir -p "$dir"
  write_nsd_conf "$dir" "$1" 53 "$WORK" "$2" "$3"
  nsd -d -c "$dir/nsd.conf" >"$dir/log" 2>&1 &
  PIDS+=($!)
}
start_nsd 127.0.0.10 . root.zone
start_nsd 127.0.0.11 test. test.zone
start_nsd 127.0.0.12 bench.test. bench.zone

cat > "$WORK/root.hints" <<'EOF'
.                    3600000 NS a.root-servers.test.
a.root-servers.test. 3600000 A  127.0.0.10
EOF

cat > "$WORK/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@5301
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: "$WORK/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  root-hints: "$WORK/root.hints"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  # test. is one of Unbound's default local zones (RFC 6761): let it through.
  local-zone: "test." nodefault
  qname-minimisation: yes
  num-queries-per-thread: 4096
  outgoing-range: 8192
  ratelimit: 0
  ip-ratelimit: 0
  so-reuseport: no
remote-control:
  control-enable: no
EOF
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=($!)
UNBOUND_PID=$!

"$PICKET" serve --recursive --root-hints "$WORK/root.hints" --allow-private-nameservers \
  --dnssec off --listen 127.0.0.1:5302 --threads 1 --log-level warn >"$WORK/picket.log" 2>&1 &
PIDS+=($!)
PICKET_PID=$!
sleep 1.5

for resolver in unbound picket; do
  port=5301; [ $resolver = picket ] && port=5302
  # Fresh names for each resolver, so both start cold.
  awk -v n="$NAMES" -v r="$resolver" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d.bench.test A\n", r, i }' >"$WORK/names-$resolver"
  # Warm the root and TLD delegations.
  printf 'warm.bench.test A\n' >"$WORK/warm"
  dnsperf -s 127.0.0.1 -p $port -d "$WORK/warm" -n 1 >/dev/null 2>&1 || true
  echo "== $resolver (cache misses, $OUTSTANDING outstanding, ${SECONDS_PER_RUN}s)"
  dnsperf -s 127.0.0.1 -p $port -d "$WORK/names-$resolver" -n 1 -l "$SECONDS_PER_RUN" -q "$OUTSTANDING" -t 5 \
    | grep -E 'Queries sent|Queries completed|Queries lost|Response codes|Queries per second|Average Latency|Latency StdDev'
  pid=$UNBOUND_PID; [ $resolver = picket ] && pid=$PICKET_PID
  rss=$(ps -o rss= -p "$pid")
  echo "  RSS after run: ${rss} KiB"
done

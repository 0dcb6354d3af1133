#!/usr/bin/env bash
# Anycast edge lab: four network namespaces and BIRD 2 over BGP + BFD.
#
#   client (10.0.1.2) ── router (AS 65000, ECMP) ─┬─ edge1 (10.0.11.2, AS 65001)  lo: 192.0.2.53/32
#                                                  └─ edge2 (10.0.12.2, AS 65001)  lo: 192.0.2.53/32
#
# Each edge runs Picket on the anycast address (edge1 on the wildcard 0.0.0.0:53,
# so it must answer from 192.0.2.53 through IP_PKTINFO; edge2 on 192.0.2.53:53),
# an upstream authority on 127.0.0.1:5300 (python3, 50 ms per answer), BIRD
# announcing 192.0.2.53/32 while its `anycast` static protocol is enabled, and
# a health check loop that enables it while `health.picket.` answers and
# disables it after 2 failures in a row (every 0.2 s). The router runs BIRD
# with `merge paths`, so the kernel holds one ECMP route over both edges,
# hashed by source port (fib_multipath_hash_policy=1).
#
# Usage (root): edge-lab.sh DIR up PICKET | down | start N | kill N | drain N |
#               paths | wait-paths COUNT SECONDS
# DIR holds configs, logs, pids and sockets. Driven by tests/edge_lab.rs.
set -euo pipefail

DIR=${1:?usage: edge-lab.sh DIR COMMAND [ARGS]}
CMD=${2:?usage: edge-lab.sh DIR COMMAND [ARGS]}
shift 2
ANYCAST=192.0.2.53
NAMESPACES=(client router edge1 edge2)

log() { echo "lab: $*" >&2; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

down() {
  # Checks first, so nothing re-enables a route while we stop; then the rest.
  for f in "$DIR"/*.check.pid "$DIR"/*.pid; do
    [ -f "$f" ] || continue
    local pid
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$f"
  done
  for ns in "${NAMESPACES[@]}"; do
    # Anything left inside (hooks, dig) goes with its namespace.
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
}

edge_ip() { echo "10.0.1$1.2"; }
router_ip() { echo "10.0.1$1.1"; }

write_configs() {
  cat >"$DIR/router.bird.conf" <<EOF
log "$DIR/router.bird.log" all;
router id 10.0.1.1;
protocol device { scan time 10; }
# ECMP: both edges' routes go to the kernel as one multipath route.
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
protocol bfd { interface "vr-e*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp edge {
  local as 65000;
  hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 5;
  bfd on;
  ipv4 { import where net = $ANYCAST/32; export none; };
}
protocol bgp edge1 from edge { neighbor $(edge_ip 1) as 65001; }
protocol bgp edge2 from edge { neighbor $(edge_ip 2) as 65001; }
EOF
  for n in 1 2; do
    cat >"$DIR/edge$n.bird.conf" <<EOF
log "$DIR/edge$n.bird.log" all;
router id $(edge_ip "$n");
protocol device { scan time 10; }
# The anycast route: enabled by the health check, disabled by it or by the drain hook.
protocol static anycast { ipv4; route $ANYCAST/32 via "lo"; disabled; }
protocol bfd { interface "ve*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp uplink {
  local $(edge_ip "$n") as 65001; neighbor $(router_ip "$n") as 65000;
  hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 5;
  bfd on;
  ipv4 { import none; export where proto = "anycast"; };
}
EOF
  done
  # The upstream: answers every A query with 198.51.100.<edge>, after 50 ms.
  cat >"$DIR/upstream.py" <<'EOF'
import asyncio, struct, sys
octet = int(sys.argv[1])
class Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        if len(data) < 12:
            return
        end = 12
        while end < len(data) and data[end] != 0:
            end += data[end] + 1
        question = data[12:end + 5]
        flags = 0x8180 | (struct.unpack(">H", data[2:4])[0] & 0x0100)
        reply = data[:2] + struct.pack(">HHHHH", flags, 1, 1, 0, 0) + question
        reply += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([198, 51, 100, octet])
        asyncio.get_running_loop().call_later(0.05, self.transport.sendto, reply, addr)
async def main():
    await asyncio.get_running_loop().create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 5300))
    await asyncio.Event().wait()
asyncio.run(main())
EOF
  # The health check: 2 failures in a row withdraw, 2 successes announce.
  cat >"$DIR/check.sh" <<'EOF'
#!/usr/bin/env bash
ctl=$1
ok=0 fail=0
while :; do
  if [ "$(dig +time=1 +tries=1 +short @192.0.2.53 health.picket. A 2>/dev/null)" = 127.0.0.1 ]; then
    ok=$((ok + 1)); fail=0
  else
    fail=$((fail + 1)); ok=0
  fi
  state=$(birdc -s "$ctl" show protocols anycast 2>/dev/null | awk '$1 == "anycast" { print $4 }')
  if [ "$fail" -ge 2 ] && [ "$state" = up ]; then
    echo "$(date +%T.%N) withdraw"; birdc -s "$ctl" disable anycast >/dev/null
  elif [ "$ok" -ge 2 ] && [ "$state" != up ]; then
    echo "$(date +%T.%N) announce"; birdc -s "$ctl" enable anycast >/dev/null
  fi
  sleep 0.2
done
EOF
  chmod +x "$DIR/check.sh"
}

start_picket() {
  local n=$1 listen
  [ "$n" = 1 ] && listen=0.0.0.0:53 || listen=$ANYCAST:53
  rm -f "$DIR/edge$n.rc"
  (
    ip netns exec "edge$n" "$DIR/picket" serve --listen "$listen" --upstream 127.0.0.1:5300 --dnssec off \
      --threads 2 --nsid "edge$n" --health-name health.picket. --no-policy \
      --allow-from 10.0.0.0/8 --allow-from "$ANYCAST/32" \
      --drain-grace 2s --drain-hook "birdc -s $DIR/edge$n.ctl disable anycast" \
      --log-level info >>"$DIR/edge$n.picket.log" 2>&1 &
    echo $! >"$DIR/edge$n.pid"
    rc=0
    wait $! || rc=$?
    echo "$rc" >"$DIR/edge$n.rc"
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$DIR/edge$n.supervisor.pid"
  for _ in $(seq 50); do
    [ -s "$DIR/edge$n.pid" ] && return 0
    sleep 0.1
  done
  log "picket on edge$n did not start"
  return 1
}

up() {
  local picket=${1:?up needs the picket binary}
  down
  mkdir -p "$DIR"
  rm -f "$DIR"/*.log "$DIR"/*.rc "$DIR"/*.ctl
  # A link, not a copy: a debug build is hundreds of MB and CI's /tmp may be short of room.
  ln -sf "$(realpath "$picket")" "$DIR/picket"
  for flag in --nsid --health-name --drain-hook; do
    "$DIR/picket" serve --help | grep -q -- "$flag" || {
      log "$picket has no $flag: not a build of this branch?"
      return 1
    }
  done
  write_configs
  for ns in "${NAMESPACES[@]}"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
  done
  ip link add vc netns client type veth peer name vr-c netns router
  in_ns client ip addr add 10.0.1.2/24 dev vc
  in_ns client ip link set vc up
  in_ns client ip route add default via 10.0.1.1
  in_ns router ip addr add 10.0.1.1/24 dev vr-c
  in_ns router ip link set vr-c up
  in_ns router sysctl -qw net.ipv4.ip_forward=1
  # Without it the kernel hashes ECMP by addresses only: one client, one edge.
  in_ns router sysctl -qw net.ipv4.fib_multipath_hash_policy=1
  for n in 1 2; do
    ip link add "vr-e$n" netns router type veth peer name "ve$n" netns "edge$n"
    in_ns router ip addr add "$(router_ip "$n")/24" dev "vr-e$n"
    in_ns router ip link set "vr-e$n" up
    in_ns "edge$n" ip addr add "$(edge_ip "$n")/24" dev "ve$n"
    in_ns "edge$n" ip link set "ve$n" up
    in_ns "edge$n" ip addr add "$ANYCAST/32" dev lo
    in_ns "edge$n" ip route add default via "$(router_ip "$n")"
  done
  for n in 1 2; do
    ip netns exec "edge$n" python3 "$DIR/upstream.py" "$n" >>"$DIR/edge$n.upstream.log" 2>&1 </dev/null &
    echo $! >"$DIR/edge$n.upstream.pid"
    start_picket "$n"
    in_ns "edge$n" bird -c "$DIR/edge$n.bird.conf" -s "$DIR/edge$n.ctl" -P "$DIR/edge$n.bird.pid"
  done
  in_ns router bird -c "$DIR/router.bird.conf" -s "$DIR/router.ctl" -P "$DIR/router.bird.pid"
  for n in 1 2; do
    ip netns exec "edge$n" "$DIR/check.sh" "$DIR/edge$n.ctl" >>"$DIR/edge$n.check.log" 2>&1 </dev/null &
    echo $! >"$DIR/edge$n.check.pid"
  done
  wait_paths 2 30
}

# Next hops of the anycast route in the router's kernel table.
paths() {
  in_ns router ip -4 route show "$ANYCAST/32" 2>/dev/null | grep -c "via 10.0.1" || true
}

wait_paths() {
  local want=$1 seconds=$2 deadline
  deadline=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(paths)" = "$want" ] && return 0
    sleep 0.1
  done
  log "router has $(paths) path(s) to $ANYCAST, wanted $want after ${seconds}s"
  in_ns router ip -4 route show >&2 || true
  birdc -s "$DIR/router.ctl" show protocols >&2 || true
  return 1
}

case "$CMD" in
  up) up "$@" ;;
  down) down ;;
  start) start_picket "${1:?edge number}" ;;
  kill) kill -KILL "$(cat "$DIR/edge${1:?edge number}.pid")" ;;
  drain)
    n=${1:?edge number}
    kill -TERM "$(cat "$DIR/edge$n.pid")"
    for _ in $(seq 200); do
      if [ -f "$DIR/edge$n.rc" ]; then
        echo "exit=$(cat "$DIR/edge$n.rc")"
        exit 0
      fi
      sleep 0.1
    done
    log "picket on edge$n did not exit within 20 s of SIGTERM"
    exit 1
    ;;
  paths) paths ;;
  wait-paths) wait_paths "${1:?count}" "${2:?seconds}" ;;
  *) log "unknown command $CMD"; exit 2 ;;
esac

# Configuration shared by the bench scripts (sourced by run.sh, fake-picket.sh,
# reload_rss.sh and recursion.sh): the NSD authority they start, and the
# Unbound forwarder Picket is measured against, written in one place so that
# every script measures the same thing.

# write_nsd_conf DIR IP PORT ZONESDIR ZONE ZONEFILE: DIR/nsd.conf for an NSD
# serving one zone on IP@PORT, its state and log files in DIR.
write_nsd_conf() {
    local dir=$1 ip=$2 port=$3 zonesdir=$4 zone=$5 zonefile=$6
    cat >"$dir/nsd.conf" <<EOF
server:
  ip-address: $ip@$port
  port: $port
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$zonesdir"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  pidfile: "$dir/nsd.pid"
  logfile: "$dir/nsd.log"
  verbosity: 0
  hide-version: yes
  # NSD rate-limits by default (rrl-ratelimit: 200), which throttles a
  # forwarder hammering one zone from one address.  Off for the bench.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "$zone"
  zonefile: "$zonefile"
EOF
}

# unbound_forwarder_conf IP PORT THREADS DIR FORWARD_ADDR [INCLUDE]: prints the
# configuration of an Unbound on IP:PORT that forwards everything to
# FORWARD_ADDR (Unbound's IP@PORT form), with INCLUDE (a file of local-zone
# lines) if given.
unbound_forwarder_conf() {
    local ip=$1 port=$2 threads=$3 dir=$4 forward=$5 include=${6:-}
    cat <<EOF
server:
  interface: $ip
  port: $port
  do-ip6: no
  num-threads: $threads
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$dir"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  # plain forwarder: no validation, no prefetch, big caches, no rate limits
  module-config: "iterator"
  do-not-query-localhost: no
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
${include:+  include: \"$include\"}
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: $forward
EOF
}

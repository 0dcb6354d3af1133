# NSD's configuration for the bench scripts, in one place (sourced by lab.sh and lib.sh).

# write_nsd_conf DIR PORT ZONE ZONESDIR: DIR/nsd.conf for NSD serving ZONE from
# ZONESDIR/ZONE.zone on 127.0.0.1:PORT. Rate limiting off: NSD's default RRL (200/s) would
# throttle a forwarder that sends it everything from one address.
write_nsd_conf() {
    local dir=$1 port=$2 zone=$3 zonesdir=$4
    mkdir -p "$dir"
    cat >"$dir/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$port
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
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "$zone."
  zonefile: "${zone}.zone"
CONF
    rm -f "$dir/zone.list" "$dir/xfrd.state"
}

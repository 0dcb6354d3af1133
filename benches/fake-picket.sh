#!/usr/bin/env bash
# Self-test stand-in for the Picket binary: accepts Picket's `serve` command
# line (the contract run.sh uses) and execs Unbound configured like run.sh's
# Unbound.  `PICKET_BIN=benches/fake-picket.sh benches/run.sh` must then give
# Picket/Unbound ratios near 1.00 (the list load is a little slower: the plain
# list is converted to local-zone lines first), which checks the harness, not
# Picket.
set -euo pipefail
[[ ${1:-} == serve ]] || { echo "usage: $0 serve --listen IP:PORT --upstream IP:PORT ..." >&2; exit 2; }
shift
listen='' upstream='' threads=1
blocklists=()
while (($#)); do
    case $1 in
    --listen) listen=$2; shift 2 ;;
    --upstream) upstream=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --blocklist) blocklists+=("$2"); shift 2 ;;
    --cache-size) shift 2 ;;
    --dnssec) shift 2 ;; # run.sh gives `off`; the Unbound below does not validate either
    --policies) shift 2 ;; # Unbound has no policy engine: the harness check ignores it
    *) echo "fake-picket: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -n $listen && -n $upstream ]] || { echo "fake-picket: --listen and --upstream are required" >&2; exit 2; }
# exec below keeps the PID, so run.sh measures Unbound itself; the config dir
# is per port and reused, not removed
dir=/tmp/fake-picket-${listen##*:}
mkdir -p "$dir"
: >"$dir/list.conf"
for f in "${blocklists[@]}"; do
    awk 'NF {printf "local-zone: \"%s.\" always_nxdomain\n", $1}' "$f" >>"$dir/list.conf"
done
[[ ${listen%:*} == 127.0.0.1 && $threads == 1 ]] ||
    { echo "fake-picket: only --listen 127.0.0.1:PORT and --threads 1 (as run.sh gives)" >&2; exit 2; }
# Unbound configured as run.sh configures it (benches/lib.sh), plus the list
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=$dir UNBOUND_PORT=${listen##*:} NSD_PORT=${upstream##*:}
UNBOUND_EXTRA_CONF="  include: \"$dir/list.conf\""
conf=$(write_unbound_conf fake)
PATH=$PATH:/usr/sbin
exec unbound -d -c "$conf"

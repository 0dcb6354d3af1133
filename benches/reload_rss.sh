#!/usr/bin/env bash
# Peak memory while the 1M-domain blocklist is reloaded under load (issue 3).
#
#   benches/reload_rss.sh                 # RELOADS=5 of each kind
#   PICKET_BIN=/tmp/old-picket RELOADS=3 benches/reload_rss.sh
#
# Starts NSD (the cached names' authority) and Picket with the list, loads
# Picket with dnsperf (cached names and blocked names, 50/50) and reloads the
# policy RELOADS times in each of two ways:
#   unchanged  SIGHUP with the list as it was (a rule edit, a routine reload):
#              the loaded list is reused
#   changed    the list file rewritten (one line added or removed) before each
#              SIGHUP: the list is read and its table built again, beside the
#              one still serving
#   url        the same list as a `"url"` list with `"refresh": "1s"`, served
#              over HTTPS (a Python server with ETags, under a CA made with
#              openssl): the file is rewritten before each round and Picket's
#              refresher downloads it (304 while it is unchanged), keeps it and
#              reloads with it, no SIGHUP
# and prints, per way, the steady RSS before it and the peak RSS (VmHWM, reset
# between the two through /proc/PID/clear_refs) during it, their ratio, the RSS
# SETTLE seconds (2) after the last reload (what the allocator kept), the time
# each reload took, and the queries dnsperf lost.
# Needs the data of benches/gen_data.py (benches/run.sh makes it), dnsperf,
# nsd, openssl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PICKET_BIN:-target/release/picket}
OUT=${BENCH_OUT:-bench-out}
DATA=$OUT/data
PORT=${PICKET_PORT:-25365}
NSD_PORT=${NSD_PORT:-25366}
RELOADS=${RELOADS:-5}
SETTLE=${SETTLE:-2} # seconds after the last reload before "after" is read
QPS=${QPS:-20000}
PATH=$PATH:/usr/sbin:/sbin
[ -f "$DATA/blocklist.txt" ] || { echo "no $DATA/blocklist.txt: run benches/run.sh (or gen_data.py) first" >&2; exit 1; }
work=$(mktemp -d)
# shellcheck source=benches/lib.sh
source benches/lib.sh # start_nsd, make_test_certs (after the settings above: lib.sh has defaults of its own)
kib() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# NSD as benches/run.sh starts it (its files under $OUT/nsd, its output in $work)
LOGS=$work
start_nsd
pids+=("$NSD_PID")

# The list Picket reads, in a file of its own that the "changed" phase edits.
cp "$DATA/blocklist.txt" "$work/blocklist.txt"
"$BIN" serve --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$NSD_PORT" --threads 1 --no-policy \
  --blocklist "$work/blocklist.txt" --log-level info >"$work/picket.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 200); do
  dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" h0.bench.test 2>/dev/null | grep -q NOERROR && break
  sleep 0.1
done
# Warm the cache with every name of the mix, so "steady" is the serving state.
dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/mix.txt" -n 1 -q 100 >/dev/null 2>&1 || true

reloads_done() { grep -c '"policy reloaded"\|policy reloaded' "$work/picket.log" || true; }

# phase NAME EDIT [TRIGGER]: RELOADS reloads under load, EDIT run before each
# TRIGGER (default: a SIGHUP; `true` lets Picket notice the change itself).
phase() {
  local name=$1 edit=$2 trigger=${3:-hup} steady peak lost before
  sleep 1
  steady=$(kib "$pid" VmRSS)
  echo 5 >"/proc/$pid/clear_refs" # VmHWM := VmRSS
  dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/mix.txt" -l $((RELOADS * 2 + 3)) -Q "$QPS" -q 100 \
    >"$work/dnsperf-$name.log" 2>&1 &
  local load=$!
  sleep 1.5
  for i in $(seq "$RELOADS"); do
    $edit "$i"
    before=$(reloads_done)
    $trigger
    for _ in $(seq 100); do [ "$(reloads_done)" -gt "$before" ] && break; sleep 0.05; done
    sleep 1.5
  done
  wait "$load" || true
  peak=$(kib "$pid" VmHWM)
  # What the allocator kept of the replaced tables: RSS once the load and the reloads are over.
  sleep "$SETTLE"
  after=$(kib "$pid" VmRSS)
  lost=$(awk '/Queries lost/ { print $3 }' "$work/dnsperf-$name.log")
  printf '%-9s steady %6d KiB  peak %6d KiB  ratio %s  after %6d KiB  queries lost %s\n' \
    "$name" "$steady" "$peak" "$(ratio "$peak" "$steady")" "$after" "$lost"
}
hup() { kill -HUP "$pid"; }
no_edit() { :; }
# Alternately append a new domain and take it away again: the content changes
# every time (new mtime and size), the list stays ~1M entries.
edit_list() {
  if (($1 % 2)); then
    echo "reload-$1.bench-added.example" >>"$work/blocklist.txt"
  else
    sed -i '$d' "$work/blocklist.txt"
  fi
}
phase unchanged no_edit
phase changed edit_list
# How long each reload took, as Picket logged it (when it does).
grep -o 'took[^,}]*' "$work/picket.log" | sed 's/^/reload /' | tail -n $((RELOADS * 2)) || true

# The url phase: the same list downloaded from an HTTPS server by Picket itself.
kill "$pid"
wait "$pid" 2>/dev/null || true
mkdir -p "$work/www" "$work/url-policy" "$work/state"
cp "$DATA/blocklist.txt" "$work/www/blocklist.txt"
make_test_certs "$work/certs" lists.bench.test
HTTPS_PORT=${HTTPS_PORT:-25367}
cat >"$work/serve.py" <<'PY'
import http.server, os, ssl, sys
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        st = os.stat(path)
        etag = '"%d-%d"' % (st.st_mtime_ns, st.st_size)
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304); self.send_header("ETag", etag); self.end_headers(); return
        data = open(path, "rb").read()
        self.send_response(200); self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
python3 "$work/serve.py" "$work/www" "$HTTPS_PORT" "$work/certs/server.pem" "$work/certs/server.key" &
pids+=($!)
cat >"$work/url-policy/p.json" <<EOF
{ "global": {
  "lists": { "bench": { "url": "https://127.0.0.1:$HTTPS_PORT/blocklist.txt", "refresh": "1s" } },
  "rules": [ { "id": "bench", "expression": "list.bench", "action": "block" } ] } }
EOF
"$BIN" serve --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$NSD_PORT" --threads 1 \
  --policies "$work/url-policy" --ca-file "$work/certs/ca.pem" --state-dir "$work/state" \
  --log-level info >"$work/picket.log" 2>&1 &
pid=$!
pids+=("$pid")
# Measured once the first download is in force (a listed name is blocked).
blocked=$(cat "$DATA/blocked-probe.txt")
for _ in $(seq 600); do
  dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" "$blocked" 2>/dev/null | grep -q NXDOMAIN && break
  sleep 0.1
done
dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/mix.txt" -n 1 -q 100 >/dev/null 2>&1 || true
edit_served() {
  if (($1 % 2)); then
    echo "reload-$1.bench-added.example" >>"$work/www/blocklist.txt"
  else
    sed -i '$d' "$work/www/blocklist.txt"
  fi
}
phase url edit_served true
grep -o 'took[^,}]*' "$work/picket.log" | sed 's/^/reload /' | tail -n "$RELOADS" || true
echo "failed list downloads: $(grep -c 'list not downloaded' "$work/picket.log" || true)"
# why (a download before the server listens, or a timeout on a loaded machine)
grep 'list not downloaded' "$work/picket.log" | grep -o 'error=.*' | cut -c1-160 | sort | uniq -c || true

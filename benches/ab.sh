#!/usr/bin/env bash
# Two Picket binaries, A (before) and B (after), on one workload of
# benches/run.sh, interleaved round by round (A-B, B-A, ...), so both see the
# same drift in machine load. Method and figures: benches/README.md.
#
#   A_BIN=/tmp/picket-old B_BIN=target/release/picket benches/ab.sh
#   ROUNDS=7 WORKLOAD=miss BENCH_SECONDS=10 benches/ab.sh
#
# Prints, per metric, the median of A, of B and of the per-round B/A ratios;
# the raw lines (round, binary, metric, value) are in $BENCH_OUT/ab.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
A_BIN=${A_BIN:?A_BIN: the picket binary to compare against (before)}
B_BIN=${B_BIN:-$ROOT/target/release/picket}
ROUNDS=${ROUNDS:-5}
WORKLOAD=${WORKLOAD:-miss}
export BENCH_OUT=${BENCH_OUT:-$ROOT/bench-out/ab}
# Ports of their own, clear of run.sh's defaults, so an A/B run and a full
# run on the same box do not collide.
export NSD_PORT=${NSD_PORT:-26353} UNBOUND_PORT=${UNBOUND_PORT:-26354} PICKET_PORT=${PICKET_PORT:-26355}
# Only the miss and hit names are needed: a small list keeps data generation short.
export BLOCKLIST_SIZE=${BLOCKLIST_SIZE:-1000}

[[ -x $A_BIN ]] || { echo "A_BIN $A_BIN is not executable" >&2; exit 1; }
[[ -x $B_BIN ]] || { echo "B_BIN $B_BIN is not executable" >&2; exit 1; }
mkdir -p "$BENCH_OUT"
TSV=$BENCH_OUT/ab.tsv
: >"$TSV"

one_run() { # round label binary
    PICKET_BIN=$3 RESOLVERS=picket WORKLOADS=$WORKLOAD ROUNDS=1 BUILD_PICKET=0 \
        "$ROOT/benches/run.sh" >"$BENCH_OUT/run-$1-$2.md" 2>"$BENCH_OUT/run-$1-$2.log"
    awk -v r="$1" -v l="$2" -F'\t' '$2 == "picket" {print r "\t" l "\t" $4 "\t" $5}' \
        "$BENCH_OUT/raw.tsv" >>"$TSV"
}

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(A B); else order=(B A); fi
    for label in "${order[@]}"; do
        bin=$A_BIN
        [[ $label == B ]] && bin=$B_BIN
        echo "[ab] round $r/$ROUNDS: $label ($bin) $WORKLOAD" >&2
        one_run "$r" "$label" "$bin"
    done
done

python3 - "$TSV" <<'EOF'
import statistics, sys
from collections import defaultdict
values = defaultdict(dict)  # (metric) -> {(round, label): value}
for line in open(sys.argv[1]):
    r, label, metric, value = line.rstrip("\n").split("\t")
    try:
        values[metric][(r, label)] = float(value)
    except ValueError:
        pass
print("| metric | A (median) | B (median) | B/A (median of rounds) | rounds |")
print("|---|---|---|---|---|")
for metric in ["us_per_q", "qps", "cpu_busy", "p50_ms", "p99_ms", "hwm_mib", "lost_pct", "noerror_pct"]:
    v = values.get(metric, {})
    rounds = sorted({r for r, _ in v})
    a = [v[(r, "A")] for r in rounds if (r, "A") in v]
    b = [v[(r, "B")] for r in rounds if (r, "B") in v]
    ratios = [v[(r, "B")] / v[(r, "A")] for r in rounds
              if (r, "A") in v and (r, "B") in v and v[(r, "A")] not in (0, float("inf"))]
    if not a or not b:
        continue
    ratio = f"{statistics.median(ratios):.3f}" if ratios else "n/a"
    per_round = ", ".join(f"{v.get((r, 'A'), float('nan')):.3g}/{v.get((r, 'B'), float('nan')):.3g}" for r in rounds)
    print(f"| {metric} | {statistics.median(a):.3f} | {statistics.median(b):.3f} | {ratio} | {per_round} |")
EOF

#!/usr/bin/env python3
"""Turn bench-out/raw.tsv into the markdown results table (benches/run.sh).

usage: summarize.py RAW_TSV META_TXT NOTES_TXT > results.md

raw.tsv lines: round resolver workload metric value.  Each cell of the main
table is the median over rounds; the ratio column is the median of the
per-round Picket/Unbound ratios (both measured in the same round, minutes
apart, so machine-load drift largely cancels).
"""

import math
import os
import statistics
import sys
from collections import defaultdict

# The two columns compared: "key=Label,key=Label" in SUMMARY_COLUMNS (the keys are the
# resolver field of raw.tsv), by default Unbound against Picket.
COLUMNS = [c.split("=", 1) for c in
           os.environ.get("SUMMARY_COLUMNS", "unbound=Unbound,picket=Picket").split(",")]
RESOLVERS = [k for k, _ in COLUMNS]
NAMES = dict(COLUMNS)

WORKLOADS = [
    ("hits", "1. cache hits (10k names, warmed)"),
    ("miss", "2. cache misses, forwarded to NSD (each name once)"),
    ("block", "3. 1M-domain blocklist + cached names, 50/50"),
    ("load", "4. loading the 1M-domain list"),
    # benches/encrypted.sh
    ("udp", "cache hits over UDP (10k names, warmed)"),
    ("dot", "cache hits over DoT (dnsperf -m dot)"),
    ("doh", "cache hits over DoH (h2load, GET)"),
    ("doh-dnsperf", "cache hits over DoH (dnsperf -m doh, GET)"),
    ("fwd", "Picket forwarding misses (each name once) to Unbound → NSD"),
]
# metric, label, format, better ("higher"/"lower"/"")
METRICS = {
    "hits": [
        ("qps", "queries/s at max load", "{:,.0f}", "higher"),
        ("us_per_q", "resolver CPU µs per answered query", "{:.2f}", "lower"),
        ("cpu_busy", "resolver CPU busy during max run (%)", "{:.0f}", ""),
        ("p50_ms", "p50 latency at ½ max rate (ms)", "{:.3f}", "lower"),
        ("p99_ms", "p99 latency at ½ max rate (ms)", "{:.3f}", "lower"),
        ("hwm_mib", "peak RSS, VmHWM (MiB)", "{:.1f}", "lower"),
    ],
    "load": [
        ("load_s", "time from start to first blocked answer (s)", "{:.2f}", "lower"),
        ("rss_mib", "RSS once answering (MiB)", "{:.1f}", "lower"),
    ],
}
METRICS["miss"] = METRICS["hits"]
METRICS["block"] = METRICS["hits"]
# max-throughput runs only: no half-load latency run
for wl in ("udp", "dot", "doh", "doh-dnsperf", "fwd"):
    METRICS[wl] = [m for m in METRICS["hits"] if m[0] in ("qps", "us_per_q", "cpu_busy", "hwm_mib")]
DETAIL = ["qps", "us_per_q", "cpu_busy", "client_cpu", "load_core_busy",
          "resolver_core_other", "lost_pct", "noerror_pct", "nxdomain_pct",
          "lat_rate", "p50_ms", "p99_ms", "hwm_mib", "load_s", "rss_mib",
          "dnstap_frames_pct"]


def num(v):
    try:
        return float(v)
    except ValueError:
        return float("nan")


def fmt(v, f):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "lost>1%"
    return f.format(v)


def main():
    raw, meta_path, notes_path = sys.argv[1:4]
    data = defaultdict(dict)  # (res, wl, metric) -> {round: value}
    rounds = set()
    for line in open(raw):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        rnd, res, wl, metric, value = parts
        data[(res, wl, metric)][int(rnd)] = num(value)
        rounds.add(int(rnd))
    meta = {}
    for line in open(meta_path):
        k, _, v = line.rstrip("\n").partition("=")
        meta[k] = v
    notes = [l.rstrip("\n") for l in open(notes_path) if l.strip()]

    def med(res, wl, m):
        vals = [v for v in data.get((res, wl, m), {}).values() if not math.isnan(v)]
        return statistics.median(vals) if vals else None

    def ratio(wl, m):
        u = data.get((RESOLVERS[0], wl, m), {})
        p = data.get((RESOLVERS[1], wl, m), {})
        rs = []
        for r in sorted(set(u) & set(p)):
            a, b = u[r], p[r]
            if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b) or a == 0:
                continue
            rs.append(b / a)
        return statistics.median(rs) if rs else None

    out = []
    w = out.append
    first_name, second_name = NAMES[RESOLVERS[0]], NAMES[RESOLVERS[1]]
    w("# %s vs %s benchmark results" % (second_name, first_name))
    w("")
    w("%s, %s rounds × %ss max runs (%ss half-load runs), git %s. Machine: %s × %s, "
      "kernel %s. CPUs: %s. Unbound %s, NSD %s, dnsperf %s (%s). Data: %s. "
      "Wall time %ss, load average at start %s, at end %s."
      % (meta.get("date"), meta.get("rounds"), meta.get("bench_seconds"),
         meta.get("lat_seconds"), meta.get("git"), meta.get("ncpu"), meta.get("host_cpu"),
         meta.get("kernel"), meta.get("cpus"), meta.get("unbound"), meta.get("nsd"),
         meta.get("dnsperf"), meta.get("dnsperf_args"), meta.get("data"),
         meta.get("wall_s"), meta.get("loadavg_start"), meta.get("loadavg_end")))
    w("")
    w("Cells are medians over rounds; the ratio is the median of per-round "
      "%s/%s ratios (>1 means %s has more of the metric; the last "
      "column says which direction is better). Method: benches/README.md."
      % (second_name, first_name, second_name))
    w("")
    w("| workload | metric | %s | %s | %s/%s | better |"
      % (first_name, second_name, second_name, first_name))
    w("|---|---|---:|---:|---:|---|")
    present = {wl for (res, wl, _) in data if res in RESOLVERS}
    for wl, title in WORKLOADS:
        if wl not in present:
            continue  # not run (WORKLOADS), or failed for every resolver: see Notes
        first = True
        for m, label, f, better in METRICS[wl]:
            cells = [fmt(med(r, wl, m), f) for r in RESOLVERS]
            rt = ratio(wl, m) if better else None
            w("| %s | %s | %s | %s | %s | %s |" % (
                title if first else "", label, cells[0], cells[1],
                ("n/a" if better else "—") if rt is None else "%.2f×" % rt, better))
            first = False
    w("")
    w("## Per-round values")
    w("")
    rr = sorted(rounds)
    head = " | ".join("%s r%d" % (NAMES[r], n) for r in RESOLVERS for n in rr)
    w("| workload | metric | %s |" % head)
    w("|---|---|%s" % ("---:|" * (len(rr) * len(RESOLVERS))))
    for wl, _ in WORKLOADS:
        for m in DETAIL:
            if not any((r, wl, m) in data for r in RESOLVERS):
                continue
            cells = []
            for r in RESOLVERS:
                d = data.get((r, wl, m), {})
                for n in rr:
                    v = d.get(n)
                    cells.append("n/a" if v is None else ("inf" if math.isinf(v) else "%g" % v))
            w("| %s | %s | %s |" % (wl, m, " | ".join(cells)))
    w("")
    w("Metric keys: qps = dnsperf queries/s; us_per_q = resolver utime+stime ÷ "
      "answered queries; cpu_busy = resolver CPU time ÷ run time; client_cpu = "
      "dnsperf CPU time ÷ its run time; load_core_busy = busy % of dnsperf's core "
      "(all processes); resolver_core_other = busy % of the resolver's core not "
      "spent by the resolver (other load); lost_pct = "
      "dnsperf lost queries; noerror_pct/nxdomain_pct = response codes of the max "
      "run; lat_rate = the -Q rate of the latency run (½ of that round's max); "
      "p50_ms/p99_ms = latency percentiles of that run (lost queries count as "
      "infinitely slow); hwm_mib = VmHWM at the end; load_s/rss_mib = time to the "
      "first blocked answer and VmRSS then.")
    w("")
    # flag runs where other processes competed for the benchmark's cores,
    # one line per resolver and workload
    for res in RESOLVERS:
        for wl, _ in WORKLOADS:
            others = data.get((res, wl, "resolver_core_other"), {})
            bad = []
            for rnd, other in sorted(others.items()):
                load = data.get((res, wl, "load_core_busy"), {}).get(rnd, float("nan"))
                client = data.get((res, wl, "client_cpu"), {}).get(rnd, float("nan"))
                # in "miss" NSD legitimately shares dnsperf's core, so only
                # the resolver's core is checked there
                if other > 10 or (wl not in ("miss", "fwd") and load - client > 25):
                    bad.append((rnd, other, load - client))
            if bad:
                notes.append(
                    "noisy: %s/%s round%s %s: other processes took %s%% of the resolver's "
                    "core%s; queries/s and latency of these runs reflect the neighbours, "
                    "CPU µs/query much less"
                    % (res, wl, "s" if len(bad) > 1 else "", ",".join(str(b[0]) for b in bad),
                       "–".join(sorted({"%.0f" % min(b[1] for b in bad), "%.0f" % max(b[1] for b in bad)}, key=float)),
                       "" if wl in ("miss", "fwd") else
                       " and %s points of dnsperf's" % "–".join(sorted({"%.0f" % min(b[2] for b in bad), "%.0f" % max(b[2] for b in bad)}, key=float))))
    w("## Notes")
    w("")
    if notes:
        for n in notes:
            w("- " + n)
    else:
        w("- none: every resolver started and every run gave the expected response codes.")
    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate the benchmark data set for benches/run.sh (issue 8).

Everything is deterministic (fixed seed), so every run, on every machine,
measures the same names.  Files written to OUTDIR:

  bench.test.zone         authoritative zone for NSD: HIT_NAMES names h<i> and
                          MISS_NAMES names m<i> under bench.test., TTL 1 day
  hits.txt                dnsperf file: the HIT_NAMES h<i> names (cache hits)
  miss.txt                dnsperf file: the MISS_NAMES m<i> names, each once,
                          shuffled (cache-miss forwarding)
  blocklist.txt           BLOCKLIST_SIZE unique domains, one per line (Picket's
                          plain format: blocks the domain and its subdomains)
  unbound-blocklist.conf  the same list as Unbound `local-zone: "x." always_nxdomain`
  mix.txt                 dnsperf file, alternating a cached h<i> name and a
                          blocked name (half listed apexes, half www.<apex>)
  blocked-probe.txt       one listed domain (the last) used as readiness probe
"""

import argparse
import os
import random
import sys

TLDS = (
    ["com"] * 40 + ["net"] * 10 + ["org"] * 8 + ["info"] * 4 + ["io"] * 4
    + ["xyz"] * 4 + ["ru"] * 3 + ["de"] * 3 + ["top"] * 3 + ["online"] * 2
    + ["site"] * 2 + ["co.uk", "com.br", "cn", "fr", "nl", "pl", "biz", "click",
                      "club", "live", "shop", "store", "app", "tk", "cc", "me"]
)
PREFIXES = ["ads", "ad", "track", "tracker", "metrics", "stats", "cdn", "pixel",
            "telemetry", "log", "analytics", "api", "static", "img", "www2", "s"]
ALPHA = "abcdefghijklmnopqrstuvwxyz"
ALNUM = ALPHA + "0123456789"


def label(rng, lo, hi):
    n = rng.randint(lo, hi)
    s = [rng.choice(ALPHA)]
    s.extend(rng.choice(ALNUM) for _ in range(n - 2))
    s.append(rng.choice(ALNUM))
    # an occasional hyphen in the middle, like real ad/tracker hosts
    if n >= 6 and rng.random() < 0.15:
        p = rng.randint(2, n - 3)
        s[p] = "-"
    return "".join(s)


def gen_blocklist(rng, count):
    seen = set()
    out = []
    while len(out) < count:
        d = label(rng, 4, 16) + "." + rng.choice(TLDS)
        r = rng.random()
        if r < 0.25:
            d = rng.choice(PREFIXES) + "." + d
        elif r < 0.30:
            d = label(rng, 3, 8) + "." + rng.choice(PREFIXES) + "." + d
        if d in seen:
            continue
        seen.add(d)
        out.append(d)
    return out


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
        f.write("\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--hit-names", type=int, default=10000)
    ap.add_argument("--miss-names", type=int, default=200000)
    ap.add_argument("--blocklist-size", type=int, default=1000000)
    ap.add_argument("--seed", type=int, default=8)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = random.Random(a.seed)
    zone = "bench.test."

    def addr(i):
        # 198.18.0.0/15 (benchmarking range); only ever data, never contacted
        return "198.%d.%d.%d" % (18 + (i >> 16) % 2, (i >> 8) & 255, i & 255)

    hits = ["h%d.%s" % (i, zone) for i in range(a.hit_names)]
    miss = ["m%d.%s" % (i, zone) for i in range(a.miss_names)]

    zl = [
        "$ORIGIN " + zone,
        "$TTL 86400",
        "@ IN SOA ns." + zone + " hostmaster." + zone + " 1 3600 900 604800 86400",
        "@ IN NS ns." + zone,
        "ns IN A 127.0.0.1",
    ]
    zl += ["%s IN A %s" % (n, addr(i)) for i, n in enumerate(hits)]
    zl += ["%s IN A %s" % (n, addr(a.hit_names + i)) for i, n in enumerate(miss)]
    write(os.path.join(a.outdir, "bench.test.zone"), zl)

    write(os.path.join(a.outdir, "hits.txt"), [n + " A" for n in hits])
    shuffled = miss[:]
    rng.shuffle(shuffled)
    write(os.path.join(a.outdir, "miss.txt"), [n + " A" for n in shuffled])

    bl = gen_blocklist(rng, a.blocklist_size)
    write(os.path.join(a.outdir, "blocklist.txt"), bl)
    write(os.path.join(a.outdir, "unbound-blocklist.conf"),
          ['local-zone: "%s." always_nxdomain' % d for d in bl])
    write(os.path.join(a.outdir, "blocked-probe.txt"), [bl[-1]])

    # mix: as many blocked query names as cached names, interleaved 1:1
    picks = rng.sample(range(len(bl)), min(a.hit_names, len(bl)))
    blocked = []
    for k, i in enumerate(picks):
        blocked.append(("www." + bl[i]) if k % 2 else bl[i])
    mix = []
    for h, b in zip(hits, blocked):
        mix.append(h + " A")
        mix.append(b + ". A")
    write(os.path.join(a.outdir, "mix.txt"), mix)
    print("gen_data: %d zone names, %d hit names, %d miss names, %d listed domains, "
          "%d mix queries -> %s" % (len(hits) + len(miss), len(hits), len(miss),
                                    len(bl), len(mix), a.outdir), file=sys.stderr)


if __name__ == "__main__":
    main()

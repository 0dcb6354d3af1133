#!/usr/bin/env python3
"""The fake DNS tree of benches/recursion.sh, as zone files (deterministic).

    root  .            on 127.0.0.10
    tld1. and tld2.    on 127.0.0.11
    ZONES leaf zones   zK.tld1. / zK.tld2. (half under each TLD) on
                       127.0.0.12-15, one server each (K mod 4); every
                       fourth group of four is glueless: its NS name lives in
                       hosts.tld2. (on 127.0.0.12), so the resolver resolves
                       it first
    NAMES names        n0 ... in the leaf zones, each with its own A record
                       (no wildcard: each new name is a new signed RRset)

Usage: recursion_tree.py OUTDIR ZONES NAMES. Writes OUTDIR/<zone>.zone for
every zone, OUTDIR/zones.txt (zone, server address, file), OUTDIR/names.txt
(dnsperf input: every name once, shuffled with a fixed seed),
OUTDIR/warm.txt (one name per leaf zone) and OUTDIR/root.hints.
"""

import os
import random
import sys

ROOT_IP = "127.0.0.10"
TLD_IP = "127.0.0.11"
LEAF_IPS = ["127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"]
HOSTS_ZONE = "hosts.tld2."
SOA_TAIL = "1 7200 900 1209600 300"


def soa(zone, ns):
    rname = "hostmaster." + ("" if zone == "." else zone)
    return f"{zone} 3600 IN SOA {ns} {rname} {SOA_TAIL}"


def leaf_zones(count):
    """(zone, server address, nameserver name or None when glued)."""
    zones = []
    for index in range(count):
        tld = "tld1." if index % 2 == 0 else "tld2."
        zone = f"z{index // 2}.{tld}"
        ip = LEAF_IPS[index % 4]
        glueless = (index // 4) % 4 == 3
        ns = f"ns-z{index // 2}-{tld[:-1]}.{HOSTS_ZONE}" if glueless else f"ns1.{zone}"
        zones.append((zone, ip, ns, glueless))
    return zones


def write(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    out, count, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    leaves = leaf_zones(count)
    listing = []

    root = [
        soa(".", "a.root-servers.tld1."),
        ". 518400 IN NS a.root-servers.tld1.",
        f"a.root-servers.tld1. 518400 IN A {ROOT_IP}",
    ]
    for tld in ("tld1.", "tld2."):
        root += [f"{tld} 172800 IN NS ns1.{tld}", f"ns1.{tld} 172800 IN A {TLD_IP}"]
    write(f"{out}/root.zone", root)
    listing.append((".", ROOT_IP, "root.zone"))

    for tld in ("tld1.", "tld2."):
        lines = [
            soa(tld, f"ns1.{tld}"),
            f"{tld} 86400 IN NS ns1.{tld}",
            f"ns1.{tld} 86400 IN A {TLD_IP}",
        ]
        if tld == "tld1.":
            lines.append(f"a.root-servers.tld1. 86400 IN A {ROOT_IP}")
        if tld == "tld2.":
            lines += [
                f"{HOSTS_ZONE} 86400 IN NS ns1.{HOSTS_ZONE}",
                f"ns1.{HOSTS_ZONE} 86400 IN A {LEAF_IPS[0]}",
            ]
        for zone, ip, ns, glueless in leaves:
            if zone.endswith("." + tld):
                lines.append(f"{zone} 86400 IN NS {ns}")
                if not glueless:
                    lines.append(f"{ns} 86400 IN A {ip}")
        write(f"{out}/{tld}zone", lines)
        listing.append((tld, TLD_IP, f"{tld}zone"))

    hosts = [
        soa(HOSTS_ZONE, f"ns1.{HOSTS_ZONE}"),
        f"{HOSTS_ZONE} 3600 IN NS ns1.{HOSTS_ZONE}",
        f"ns1.{HOSTS_ZONE} 3600 IN A {LEAF_IPS[0]}",
    ]
    hosts += [f"{ns} 3600 IN A {ip}" for _, ip, ns, glueless in leaves if glueless]
    write(f"{out}/{HOSTS_ZONE}zone", hosts)
    listing.append((HOSTS_ZONE, LEAF_IPS[0], f"{HOSTS_ZONE}zone"))

    per_zone = max(1, names // len(leaves))
    queries = []
    for zone, ip, ns, glueless in leaves:
        lines = [soa(zone, ns), f"{zone} 3600 IN NS {ns}"]
        if not glueless:
            lines.append(f"{ns} 3600 IN A {ip}")
        lines.append(f"www.{zone} 3600 IN A 192.0.2.1")
        for i in range(per_zone):
            lines.append(f"n{i}.{zone} 3600 IN A 192.0.2.{i % 250 + 1}")
            queries.append(f"n{i}.{zone} A")
        write(f"{out}/{zone}zone", lines)
        listing.append((zone, ip, f"{zone}zone"))

    random.Random(16).shuffle(queries)
    write(f"{out}/names.txt", queries)
    write(f"{out}/warm.txt", [f"www.{zone} A" for zone, _, _, _ in leaves])
    write(f"{out}/zones.txt", [" ".join(z) for z in listing])
    write(
        f"{out}/root.hints",
        [". 3600000 NS a.root-servers.tld1.", f"a.root-servers.tld1. 3600000 A {ROOT_IP}"],
    )


if __name__ == "__main__":
    main()

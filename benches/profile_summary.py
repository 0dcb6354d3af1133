#!/usr/bin/env python3
"""Groups a `perf report --no-children --sort symbol` listing (self cycles) by stage of the
query path: benches/profile.sh writes one per workload. Kernel symbols are grouped by the
system call they serve (from the `--children` listing of the libc wrappers)."""
import re
import sys

USER = [  # (group, symbol pattern), first match wins
    ("cache (front table, moka)", r"picket::cache|moka::|__memcmp"),
    ("policy (request + response phase, Wirefilter)", r"picket::policy|wirefilter|indexmap|picket::rebinding"),
    ("parse + reply writing", r"picket::protocol|picket::synthesize|picket::local"),
    ("observe (metrics, log, dashboard)", r"picket::observe|metrics::|quanta"),
    ("upstream (forwarder, coalescer, answer parse)", r"picket::upstream|hickory|rand::|rand_"),
    ("pipeline + listener", r"picket::pipeline|picket::listener|picket::query|picket::admission"),
    ("allocator", r"malloc|free|_int_|realloc|cfree|tcache"),
    ("tokio runtime", r"tokio::|mio::|parking_lot"),
    ("memcpy/memmove", r"__mem(move|cpy|set)"),
]
SYSCALLS = ["__sendmmsg", "__recvmmsg", "epoll_wait", "__libc_sendto", "sendto", "__libc_recvfrom",
            "recvfrom", "__socket", "socket", "__connect", "connect", "__close", "close",
            "epoll_ctl", "__libc_recv", "__libc_send", "clock_gettime"]


def rows(path):
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+(?:([\d.]+)%\s+)?\[(.)\]\s+(.*?)\s*(?:-\s+-\s*)?$", line)
        if m:
            yield float(m.group(1)), m.group(3), m.group(4).strip()


def main(self_txt, children_txt):
    user, kernel = {}, 0.0
    for pct, kind, sym in rows(self_txt):
        if kind == "k":
            kernel += pct
            continue
        group = next((g for g, pat in USER if re.search(pat, sym)), "other user space")
        user[group] = user.get(group, 0.0) + pct
    print("| where | % of cycles |")
    print("|---|---:|")
    for pct, kind, sym in rows(children_txt):
        if kind == "." and sym in SYSCALLS:
            print(f"| kernel via `{sym}` (inclusive) | {pct:.1f} |")
    print(f"| kernel, all (self) | {kernel:.1f} |")
    for group, pct in sorted(user.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {pct:.1f} |")
    print(f"| user space, all (self) | {sum(user.values()):.1f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

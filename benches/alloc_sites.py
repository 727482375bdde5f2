#!/usr/bin/env python3
"""Allocations per request, and who makes them, from `PROFILE=1 bash benches/instructions.sh`.

    python3 benches/alloc_sites.py [BASE] [OTHER] [--requests 3000]

Reads target/profile-BASE.callgrind and target/profile-OTHER.callgrind (defaults: bare and
portico-b), counts the calls into the allocator (glibc's malloc family for the bare proxy,
mimalloc's for Portico) per request, and lists the calling functions whose count differs.
The profiled run serves N2 - N1 requests (3,000 with the script's defaults). Under fat LTO a
caller is the function the allocation was inlined into, so names are approximate.
"""

import argparse
import collections
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOC = re.compile(r"^(malloc|calloc|realloc|mi_malloc_aligned|mi_realloc_aligned|mi_zalloc_aligned)$")


def allocations(name):
    """{caller: allocator calls} for one profile."""
    names, calls, fn, cfn = {}, collections.Counter(), None, None
    with open(os.path.join(ROOT, "target", f"profile-{name}.callgrind")) as f:
        for line in f:
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                kind, idx, label = m.groups()
                if label:
                    names[idx] = label
                if kind == "fn":
                    fn = names.get(idx, idx)
                else:
                    cfn = names.get(idx, idx)
                continue
            if line.startswith("calls=") and cfn and ALLOC.match(cfn):
                calls[fn] += int(line.split("=")[1].split()[0])
    return calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base", nargs="?", default="bare")
    ap.add_argument("other", nargs="?", default="portico-b")
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    a, b = allocations(args.base), allocations(args.other)
    n = args.requests
    print(f"allocations per request: {args.base} {sum(a.values()) / n:.1f}, {args.other} {sum(b.values()) / n:.1f}")
    for caller in sorted(set(a) | set(b), key=lambda k: -(b[k] - a[k])):
        diff = (b[caller] - a[caller]) / n
        if abs(diff) >= 0.3:
            print(f"{diff:+6.2f}  {a[caller] / n:5.2f} -> {b[caller] / n:5.2f}  {caller[:140]}")


if __name__ == "__main__":
    main()

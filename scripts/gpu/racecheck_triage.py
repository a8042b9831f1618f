#!/usr/bin/env python3
# racecheck_triage.py — sorts compute-sanitizer racecheck hazards into the two known false-positive kinds and
# the rest, and fails on the rest. Usage: racecheck_triage.py RACECHECK_LOG [SASS_LOG]
#
# Why a triage: racecheck does not model the transaction count of an mbarrier, so a bulk async copy into
# shared memory (SASS UBLKCP) and the reads that wait on that copy's barrier are reported as a race. That
# pattern shows up in cuBLAS's own TMA kernels (nvjet*, since session 2) and in our persistent decode kernel
# (session 11 confirmed its only write site is its UBLKCP instruction). Accepted here, and nothing else:
#   - a hazard whose both sides lie in a cuBLAS kernel (nvjet* / *cublas*): not our code;
#   - a hazard in decode_persist_kernel whose write side is one of that kernel's UBLKCP offsets, read from
#     SASS_LOG (the `cuobjdump -sass` lines that session.sh keeps: "Function : ..." and "/*off*/ UBLKCP").
# Any other hazard, or a persistent-kernel hazard without a SASS log to check it against, fails (exit 1).
import re
import sys

REPORT = re.compile(r"Error: Race reported between (\w+) access at (.+?)\+0x([0-9a-f]+)")
PAIR = re.compile(r"^=+\s+and (\w+) access at (.+?)\+0x([0-9a-f]+)")
SASS_FN = re.compile(r"Function : (\S+)")
SASS_BULK = re.compile(r"/\*([0-9a-f]+)\*/\s+UBLKCP")


def cublas(fn):
    return fn.startswith("nvjet") or "cublas" in fn.lower()


def bulk_offsets(path):
    """UBLKCP offsets of the persistent kernel's SASS."""
    offs, inside = set(), False
    with open(path, errors="replace") as f:
        for line in f:
            m = SASS_FN.search(line)
            if m:
                inside = "decode_persist_kernel" in m.group(1)
                continue
            m = SASS_BULK.search(line)
            if m and inside:
                offs.add(int(m.group(1), 16))
    return offs


def main(argv):
    if len(argv) < 2:
        print(__doc__ or "usage: racecheck_triage.py RACECHECK_LOG [SASS_LOG]", file=sys.stderr)
        return 2
    bulk = bulk_offsets(argv[2]) if len(argv) > 2 else set()
    counts = {"cuBLAS TMA (not ours)": 0, "persistent kernel: bulk copy vs its readers": 0}
    other = []
    first = None  # (kind, function, offset) of the report being read
    with open(argv[1], errors="replace") as f:
        for line in f:
            m = REPORT.search(line)
            if m:
                first = (m.group(1), m.group(2).strip(), int(m.group(3), 16))
                continue
            m = PAIR.search(line)
            if not m or first is None:
                if not line.strip("= \n"):
                    first = None
                continue
            second = (m.group(1), m.group(2).strip(), int(m.group(3), 16))
            write = first if first[0] == "Write" else second if second[0] == "Write" else None
            if cublas(first[1]) and cublas(second[1]):
                counts["cuBLAS TMA (not ours)"] += 1
            elif ("decode_persist_kernel" in first[1] and "decode_persist_kernel" in second[1] and write
                  and write[2] in bulk):
                counts["persistent kernel: bulk copy vs its readers"] += 1
            else:
                other.append("%s at %s+0x%x / %s at %s+0x%x" % (first + second))
    for k, v in counts.items():
        print("accepted: %-45s %d pair(s)" % (k, v))
    if not bulk:
        print("note: no UBLKCP offsets given (or found): persistent-kernel hazards cannot be accepted")
    for o in sorted(set(other)):
        print("HAZARD: " + o)
    print("%d other hazard pair(s)" % len(other))
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

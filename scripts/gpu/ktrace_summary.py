#!/usr/bin/env python3
"""ktrace_summary.py — per-step kernel time from tools/ktrace CSV files (one per process): the window
is the last STEPS decode steps (delimited by the sampler kernel, which runs once per step), reported
per kernel name (calls and microseconds per step) with the step's wall, busy and idle time.
Kernels launched with programmatic dependent launch start early and wait inside: their durations
include the wait for their predecessor, so per-name times overlap; "busy" is the union of intervals.
Usage: ktrace_summary.py [--steps N] FILE..."""
import csv
import sys


def summarise(path, steps):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("name") and r.get("end_ns"):  # a process killed before its last flush cuts a line
                rows.append((int(r["start_ns"]), int(r["end_ns"]), r["name"]))
    rows.sort()
    marks = [i for i, r in enumerate(rows) if "sample_kernel" in r[2]]
    if len(marks) < steps + 1:
        print(f"{path}: {len(marks)} sampler kernels, fewer than {steps + 1}: no window")
        return
    lo, hi = marks[-steps - 1] + 1, marks[-1] + 1
    win = rows[lo:hi]
    wall = win[-1][1] - win[0][0]
    busy, cur_s, cur_e = 0, None, None
    for s, e, _ in win:  # union of kernel intervals
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    per = {}
    for s, e, n in win:
        short = n.split("(")[0][:70]
        c, t = per.get(short, (0, 0))
        per[short] = (c + 1, t + (e - s))
    print(f"== {path}: {steps} steps, per step: wall {wall / steps / 1e3:.1f} us, kernels busy "
          f"{busy / steps / 1e3:.1f} us, idle {(wall - busy) / steps / 1e3:.1f} us, {len(win) / steps:.0f} kernels")
    for n, (c, t) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"  {t / steps / 1e3:9.1f} us/step  {c / steps:6.1f} calls/step  {t / c / 1e3:8.2f} us/call  {n}")
    # The critical path as the chain sees it: each kernel is charged from the previous kernel's end (in end
    # order) to its own end, so early (PDL) starts and waits inside do not count twice; sums to the wall.
    chain, prev = {}, win[0][0]
    for s, e, n in sorted(win, key=lambda r: r[1]):
        short = n.split("(")[0][:70]
        c, t = chain.get(short, (0, 0))
        chain[short] = (c + 1, t + max(0, e - max(prev, 0)))
        prev = max(prev, e)
    print("  -- end to end (from the previous kernel's end):")
    for n, (c, t) in sorted(chain.items(), key=lambda kv: -kv[1][1]):
        print(f"  {t / steps / 1e3:9.1f} us/step  {c / steps:6.1f} calls/step  {t / c / 1e3:8.2f} us/call  {n}")
    layer_view(win, steps)


def layer_view(win, steps):
    """The step's first kernels up to its first all-reduce, and one decoder layer from the middle of the
    step, end to end per kernel, averaged over the steps (graph replays launch the same sequence every step;
    the layer is the sequence's repeating unit)."""
    seqs, cur, prev = [], [], win[0][0]
    for s, e, n in sorted(win, key=lambda r: r[1]):
        cur.append((n.split("(")[0][:70], max(0, e - prev)))
        prev = max(prev, e)
        if "sample_kernel" in n:
            seqs.append(cur)
            cur = []
    names = [n for n, _ in seqs[0]] if seqs else []
    if not seqs or any([n for n, _ in q] != names for q in seqs):
        return
    # The step's head: at tp > 1 the first all-reduce also waits for the ranks that started the step later
    # (they receive the plan over TCP), which shows here as a long first all-reduce.
    head = next((i + 1 for i, n in enumerate(names) if "all_redu" in n or "AllReduce" in n), min(4, len(names)))
    print(f"  -- the step's first {head} kernels, end to end:")
    for i in range(min(head, len(names))):
        print(f"  {sum(q[i][1] for q in seqs) / len(seqs) / 1e3:9.2f} us  {names[i]}")
    mid = len(names) // 2
    # a period p must repeat three times around the middle: [mid - 2p, mid + 2p) inside the step
    period = next((p for p in range(2, 40) if mid - 2 * p >= 0 and mid + 2 * p <= len(names) and
                   all(names[i] == names[i + p] for i in range(mid - 2 * p, mid + p))), 0)
    if period == 0:
        print(f"  -- no repeating layer in the step's {len(names)} kernels (e.g. the persistent decode kernel)")
        return
    print(f"  -- one layer ({period} kernels, from the middle of the step), end to end:")
    total = 0.0
    for i in range(mid, mid + period):
        t = sum(q[i][1] for q in seqs) / len(seqs) / 1e3
        total += t
        print(f"  {t:9.2f} us  {names[i]}")
    print(f"  {total:9.2f} us  layer")


def main():
    args = sys.argv[1:]
    steps = 32
    if args[:1] == ["--steps"]:
        steps, args = int(args[1]), args[2:]
    for p in args:
        summarise(p, steps)


if __name__ == "__main__":
    main()

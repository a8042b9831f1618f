#!/usr/bin/env python3
"""run.py — runs clang's static analyzer over the C files under one folder of a compile_commands.json
(scripts/analyze.sh makes it). Prints each finding with its path notes; exits 1 when there is any (or when a file
fails to analyze). Usage: run.py CDB CLANG MODELS_H FOLDER [JOBS]"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

# Dead stores are style here (`(st = f()) != SS_OK || ...` chains), not bugs; every other default checker counts.
DISABLED = ["deadcode.DeadStores"]


def analyze_args(entry, clang, models):
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out, skip = [clang, "--analyze", "-Xanalyzer", "-analyzer-output=text", "-include", models], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c" and not a.startswith("-fsanitize"):
            out.append(a)
    for c in DISABLED:
        out += ["-Xanalyzer", "-analyzer-disable-checker=" + c]
    return out + ["-o", os.devnull]


def main():
    cdb, clang, models = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    folder = os.path.abspath(sys.argv[4]) + os.sep
    jobs = int(sys.argv[5]) if len(sys.argv) > 5 else os.cpu_count()
    entries = [e for e in json.load(open(cdb))
               if e["file"].endswith(".c") and os.path.abspath(e["file"]).startswith(folder)]
    if not entries:
        print(f"analyze: {cdb} lists no C files under {folder}", file=sys.stderr)
        return 1

    def one(e):
        p = subprocess.run(analyze_args(e, clang, models), cwd=e["directory"], capture_output=True, text=True)
        return e["file"], p.returncode, p.stdout + p.stderr

    bad = 0
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        for f, rc, text in ex.map(one, entries):
            if rc != 0 or "warning:" in text or "error:" in text:
                bad += 1
                sys.stdout.write(text if text else f"{f}: clang exited with {rc}\n")
    print(f"analyze: {len(entries)} C files, {bad} with findings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

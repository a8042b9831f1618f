#!/usr/bin/env bash
# analyze.sh — clang's static analyzer over the product's C files (src/, with the CUDA backend's host code when nvcc
# is there); fails on any finding. Configures only, for the compile commands. (tests/ and tools/ are left out: their
# error exits leave memory to the process's end, and the tests run under ASan and LeakSanitizer anyway.)
# Usage: scripts/analyze.sh [BUILD_DIR]   (default build-analyze; JOBS=N, CLANG=path)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-analyze}
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
CC=$CLANG cmake -S . -B "$B" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
python3 scripts/analyze/run.py "$B/compile_commands.json" "$CLANG" scripts/analyze/models.h src "${JOBS:-$(nproc)}"

#!/usr/bin/env bash
# Runs every test: the normal build (with the CUDA backend compiled when nvcc is present), then the
# ASan+UBSan build, then clang's static analyzer over src/ and the fuzzers briefly. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS")
cmake -S . -B build-asan -DSS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$JOBS" -LE no-asan)
if command -v clang >/dev/null; then
  JOBS=$JOBS scripts/analyze.sh build-analyze
  CC=clang cmake -S . -B build-fuzz -DSS_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz -j"$JOBS"
  (cd build-fuzz && ctest --output-on-failure -L fuzz)
fi

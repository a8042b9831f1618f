#!/usr/bin/env bash
# check.sh — everything the GPU machine checks for the CUDA backend, in ONE call (< ~6 minutes):
#   1. build with CUDA (Release) there, or use the binaries scripts/gpu/stage.sh packed into
#      build-gpudeps/ when that machine lacks the build dependencies;
#   2. test_backend_consistency (every op on cpu and cuda, compared);
#   3. compute-sanitizer memcheck and racecheck on that test;
#   4. tools/bench_backend (Llama-3-8B shapes, GB/s against the measured copy bandwidth).
# Logs go to $OUT (the device tool's folder; default build-gpu-out/), at most 6 files (the tool returns 8):
# summary.txt, build.log, ptxas.txt, consistency.log, sanitizer.log, bench.log.
# Usage: scripts/gpu/check.sh [--no-sanitizer] [--no-bench]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
FINAL=${OUT:-$ROOT/build-gpu-out}
OUT=$(mktemp -d /tmp/ss-gpu-check.XXXXXX) # working logs; the few that matter are gathered at exit
mkdir -p "$FINAL"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
gather() {
  cp "$SUMMARY" "$FINAL/summary.txt"
  cat "$OUT/env.log" "$OUT/configure.log" "$OUT/build.log" >"$FINAL/build.log" 2>/dev/null
  cat "$OUT/ptxas-summary.txt" "$OUT/spills.txt" "$OUT/ptxas.txt" >"$FINAL/ptxas.txt" 2>/dev/null
  cp "$OUT/consistency.log" "$FINAL/" 2>/dev/null
  cat "$OUT/memcheck.log" "$OUT/racecheck.log" >"$FINAL/sanitizer.log" 2>/dev/null
  cp "$OUT/bench.log" "$FINAL/" 2>/dev/null
  return 0
}
trap gather EXIT
RUN_SAN=1
RUN_BENCH=1
for a in "$@"; do
  case $a in
  --no-sanitizer) RUN_SAN=0 ;;
  --no-bench) RUN_BENCH=0 ;;
  esac
done
# Never use NVLink multicast on the shared machines.
export NCCL_NVLS_ENABLE=0
FAILED=0
note() { echo "$*" | tee -a "$SUMMARY"; }
step() { # step NAME TIMEOUT LOG CMD...: runs CMD with a deadline, logs it, records PASS/FAIL
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then note "PASS  $name ($((SECONDS - t0)) s)"; else
    note "FAIL  $name (rc $rc, $((SECONDS - t0)) s; see $(basename "$log"))"
    FAILED=1
  fi
  return $rc
}

# ---- environment
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  command -v nvcc && nvcc --version | tail -2
  cmake --version | head -1
  git -C "$ROOT" rev-parse HEAD 2>/dev/null
} >"$OUT/env.log" 2>&1
note "card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"

# CUDA libraries: the toolkit's, else the pip wheels' (nvidia-*-cu13) that PyTorch brings.
CUDA_LIBS=/usr/local/cuda/lib64
PYNV=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)
for d in "$PYNV"/*/lib; do [ -d "$d" ] && CUDA_LIBS=$CUDA_LIBS:$d; done
NCCL_ROOT=""
if ! ls /usr/local/cuda/lib64/libnccl.so* /usr/lib/x86_64-linux-gnu/libnccl.so* >/dev/null 2>&1; then
  [ -d "$PYNV/nccl" ] && NCCL_ROOT=$PYNV/nccl
fi
export PATH=/usr/local/cuda/bin:$PATH

# ---- 1. binaries: build here if the host libraries are installed, else the staged ones
PKGS="libcjson libevent libevent_pthreads libpcre2-8 libutf8proc libcurl openblas libxxhash cmocka"
BUILD=$ROOT/build-gpu
if command -v pkg-config >/dev/null && pkg-config --exists $PKGS 2>/dev/null && [ -z "${SS_GPU_PREBUILT:-}" ]; then
  step "configure (Release, CUDA)" 120 "$OUT/configure.log" \
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSS_CUDA=ON -DSS_CUDA_PTXAS_VERBOSE=ON \
    -DCMAKE_C_FLAGS=-Wno-error=maybe-uninitialized ${NCCL_ROOT:+-DSS_NCCL_ROOT=$NCCL_ROOT}
  step "build" 360 "$OUT/build.log" cmake --build "$BUILD" -j"$(nproc)" --target test_backend_consistency bench_backend
  grep -E "ptxas info|spill" "$OUT/build.log" >"$OUT/ptxas.txt"
  TEST=$BUILD/tests/test_backend_consistency
  BENCH=$BUILD/tools/bench_backend
  LIBS=""
elif [ -d "$ROOT/build-gpudeps/bin" ]; then
  note "note  no build dependencies here: using the binaries staged by scripts/gpu/stage.sh ($(cat "$ROOT/build-gpudeps/commit.txt" 2>/dev/null))"
  mkdir -p /tmp/ssdeps && tar -C /tmp/ssdeps -xJf "$ROOT/build-gpudeps/libs.tar.xz"
  cp "$ROOT/build-gpudeps/ptxas.txt" "$OUT/ptxas.txt" 2>/dev/null
  TEST=$ROOT/build-gpudeps/bin/test_backend_consistency
  BENCH=$ROOT/build-gpudeps/bin/bench_backend
  LIBS=/tmp/ssdeps/lib
else
  note "FAIL  no build dependencies ($PKGS) and no build-gpudeps/: run scripts/gpu/stage.sh here and carry build-gpudeps"
  exit 1
fi
export LD_LIBRARY_PATH=${LIBS:+$LIBS:}$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -s "$OUT/ptxas.txt" ]; then
  # one line per kernel and arch: registers and spill bytes (c++filt demangles where it exists)
  awk -f "$ROOT/scripts/gpu/ptxas_summary.awk" "$OUT/ptxas.txt" |
    { if command -v c++filt >/dev/null; then c++filt; else cat; fi } >"$OUT/ptxas-summary.txt"
  grep -vE "spill st 0 ld 0" "$OUT/ptxas-summary.txt" >"$OUT/spills.txt"
  if [ -s "$OUT/spills.txt" ]; then note "warn  register spills: see ptxas.txt"; else note "info  no register spills"; fi
fi

# ---- 2. consistency
if [ -x "$TEST" ]; then
  step "test_backend_consistency" 240 "$OUT/consistency.log" "$TEST"
  grep -E "SKIPPED|FAILED|PASSED|relative L2|sample row" "$OUT/consistency.log" | head -40 | sed 's/^/      /' >>"$SUMMARY"
  # ---- 3. sanitizers
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
  if [ $RUN_SAN -eq 1 ] && [ -n "$SAN" ]; then
    step "compute-sanitizer memcheck" 300 "$OUT/memcheck.log" \
      "$SAN" --tool memcheck --leak-check full --error-exitcode 9 --print-limit 40 "$TEST"
    tail -3 "$OUT/memcheck.log" | sed 's/^/      /' >>"$SUMMARY"
    step "compute-sanitizer racecheck" 300 "$OUT/racecheck.log" \
      "$SAN" --tool racecheck --racecheck-report analysis --error-exitcode 9 --print-limit 40 "$TEST"
    tail -3 "$OUT/racecheck.log" | sed 's/^/      /' >>"$SUMMARY"
  elif [ $RUN_SAN -eq 1 ]; then
    note "skip  compute-sanitizer not found"
  fi
fi

# ---- 4. benchmark
if [ $RUN_BENCH -eq 1 ] && [ -x "$BENCH" ]; then
  step "bench_backend" 240 "$OUT/bench.log" "$BENCH" --iters 50
  cat "$OUT/bench.log" >>"$SUMMARY"
fi
note "overall: $([ $FAILED -eq 0 ] && echo PASS || echo FAIL)"
exit $FAILED

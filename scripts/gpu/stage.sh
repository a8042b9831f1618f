#!/usr/bin/env bash
# stage.sh — run on the DEV machine (nvcc + Debian -dev packages, no GPU) before a GPU call. Builds the
# CUDA Release binaries and packs them, with the shared libraries the GPU image may lack, into
# build-gpudeps/ (ignored by git through /build*/), so that scripts/gpu/check.sh can run them even where
# the GPU machine cannot build (no libcjson-dev & co, no network). Then, on the GPU machine:
#   run(command="scripts/gpu/check.sh", carry=["build-gpudeps"])
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build-gpu-stage}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DSS_CUDA=ON -DSS_CUDA_PTXAS_VERBOSE=ON \
  -DCMAKE_C_FLAGS=-Wno-error=maybe-uninitialized >/dev/null
if ! cmake --build "$B" -j"${JOBS:-2}" --target test_backend_consistency bench_backend shardserve >"$B/build.log" 2>&1; then
  grep -vE 'ptxas info|bytes stack frame' "$B/build.log" | tail -40
  exit 1
fi
rm -rf build-gpudeps
mkdir -p build-gpudeps/bin build-gpudeps/lib
cp "$B/tests/test_backend_consistency" "$B/tools/bench_backend" "$B/shardserve" build-gpudeps/bin/
grep -E "ptxas info|spill" "$B/build.log" >build-gpudeps/ptxas.txt || true
# Shared libraries outside glibc/libstdc++ and the CUDA toolkit (the GPU image has those).
for bin in build-gpudeps/bin/*; do
  ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libnccl)\.so' \
  | while read -r lib; do cp -L "$lib" build-gpudeps/lib/; done
tar -C build-gpudeps -cJf build-gpudeps/libs.tar.xz lib && rm -rf build-gpudeps/lib
git rev-parse HEAD >build-gpudeps/commit.txt 2>/dev/null || true
du -sh build-gpudeps
echo "staged: carry build-gpudeps and run scripts/gpu/check.sh"

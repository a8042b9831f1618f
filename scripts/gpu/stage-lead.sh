#!/usr/bin/env bash
# stage-lead.sh — run HERE (nvcc, no GPU) before a GPU call: packs the CUDA Release binaries, the shared
# libraries the GPU image lacks, the fixtures and the demo corpus into .gpu-carry/ (git-ignored through
# .gitignore) for scripts/gpu/session.sh. Usage: scripts/gpu/stage-lead.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-lead-gpu}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DSS_CUDA=ON >/dev/null
cmake --build "$B" -j"${JOBS:-2}" >/dev/null
C=.gpu-carry
rm -rf "$C" && mkdir -p "$C/stage/build/tests" "$C/stage/build/tools" "$C/stage/lib"
cp "$B/shardserve" "$C/stage/build/"
for t in test_golden test_backend_consistency test_sharded test_comm_peer test_fp8_checkpoint; do cp "$B/tests/$t" "$C/stage/build/tests/" 2>/dev/null || true; done
for t in bench_decode bench_backend gen_checkpoint bench_tokenizer eval_ppl long_logits bench_gemm_algos libss_ktrace.so; do cp "$B/tools/$t" "$C/stage/build/tools/" 2>/dev/null || true; done
for bin in "$C"/stage/build/shardserve "$C"/stage/build/tests/* "$C"/stage/build/tools/*; do
  ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libnccl)\.so' \
  | while read -r lib; do cp -L "$lib" "$C/stage/lib/"; done
echo "$(realpath "$B")" >"$C/stage/build_dir.txt"
git rev-parse HEAD >"$C/stage/commit.txt"
tar -C "$C/stage" -cJf "$C/bin.tar.xz" . && rm -rf "$C/stage"
# OLD_BUILD=DIR: another commit's Release build (shardserve + tools/bench_decode, and tools/bench_backend and
# tools/eval_ppl where built) for A/B runs in one call
if [ -n "${OLD_BUILD:-}" ]; then
  mkdir -p "$C/old/tools" && cp "$OLD_BUILD/shardserve" "$C/old/" && cp "$OLD_BUILD/tools/bench_decode" "$C/old/tools/"
  for t in eval_ppl bench_backend; do [ -f "$OLD_BUILD/tools/$t" ] && cp "$OLD_BUILD/tools/$t" "$C/old/tools/"; done
  tar -C "$C/old" -cJf "$C/old.tar.xz" . && rm -rf "$C/old"
fi
tar -C ../shared -cJf "$C/fixtures.tar.xz" fixtures
[ -d tools/demo-model/.corpus ] && tar -C tools/demo-model -cJf "$C/corpus.tar.xz" .corpus
du -sh "$C"/*

#!/usr/bin/env bash
# session.sh — the lead's GPU run, in one device call: unpacks what scripts/gpu/stage-lead.sh packed,
# trains the demo model on the last GPU in the background, and meanwhile runs the GPU checks and
# benchmarks on the others. Every step has a deadline; the whole run stays under BUDGET seconds.
# Results: $OUT/summary.txt, $OUT/logs.tar.xz, and $OUT/demo-*.{safetensors,json,txt} from training.
# Usage: scripts/gpu/session.sh [phases...]   phases: train check bench multi sanitize sanattn checks1 wgp s21a s21p s23m s24p fp8ck f8eng longref ctx128 mixlong s20a s20s s20t s20x s20m s20p s19a s19b s19c s19t s19g s18a s18b f8var dense s18t s18p s18s s17a s17c s17d s17e tp2 x4 x4p x4t x70t x2k peer mergeab s14 splits merge1 pp pptp ovl tp1ab samp fin2 x70 s4b next s6 ab abtp cases trace long profile servebisect serve lpab serveab spec vstep seqform seq8 bucket h100 genv maxb soak wgprof s54 s55 (default: train check bench multi sanitize)
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUDGET=${BUDGET:-560}
T0=$SECONDS
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUTD=${OUT:-$ROOT/build-gpu-out}
mkdir -p "$OUTD"
W=/tmp/ssg
rm -rf "$W" && mkdir -p "$W/logs"
L=$W/logs
S=$OUTD/summary.txt
: >"$S"
note() { echo "$*" | tee -a "$S"; }
left() { echo $((BUDGET - (SECONDS - T0))); }
step() { # step NAME TIMEOUT LOGNAME CMD... (skipped when the budget is short)
  local name=$1 lim=$2 log=$L/$3
  shift 3
  if [ "$(left)" -lt 20 ]; then note "SKIP  $name (budget)"; return 1; fi
  [ "$lim" -gt "$(left)" ] && lim=$(left)
  local t=$SECONDS
  timeout "$lim" "$@" >"$log" 2>&1
  local rc=$?
  local tps; tps=$(grep -ho '"decode_tok_s":[0-9.]*' "$log" 2>/dev/null | tail -1 | cut -d: -f2)
  if [ $rc -eq 0 ]; then note "PASS  $name ($((SECONDS - t)) s)${tps:+ decode $tps tok/s}"; else note "FAIL  $name (rc $rc, $((SECONDS - t)) s)"; tail -5 "$log" | sed 's/^/      /' | tee -a "$S"; fi
  return $rc
}
finish() {
  [ -n "${TRAIN_PID:-}" ] && kill "$TRAIN_PID" 2>/dev/null
  grep -h '^{' "$L"/bench_*.log 2>/dev/null >"$L/bench.jsonl"
  tar -C "$W" -cJf "$OUTD/logs.tar.xz" logs 2>/dev/null
  if [ -d "$W/demo" ]; then for f in "$W"/demo/*; do cp "$f" "$OUTD/demo-$(basename "$f")"; done; fi
  note "elapsed $((SECONDS - T0)) s"
  cat "$S" >/dev/null
}
trap finish EXIT
PH=${*:-train check bench multi sanitize}
has() { case " $PH " in *" $1 "*) return 0 ;; esac; return 1; }
# Waits up to 120 s for the server PID on port 8000 to say ready; sets ready (0/1) and i (half-seconds).
wait_ready() {
  ready=0
  for i in $(seq 1 240); do
    python3 -c 'import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2).status == 200 else 1)' 2>/dev/null && { ready=1; break; }
    kill -0 "$1" 2>/dev/null || break
    sleep 0.5
  done
}
# An environment variant of AB_ENVS, PROFILE_ENVS, LONG_ENVS ("-": none; "A=1,B=2": two settings): sets
# ev (the settings, for env) and vtag (for file names).
variant() { ev=(); [ "$1" != - ] && IFS=, read -ra ev <<<"$1"; vtag=$(echo "$1" | tr '=,' '__'); }
# The Llama-3-70B-shaped checkpoint (~141 GB, ~90 s): gen70_start writes it in the background (a no-op when
# it is there); gen70_wait waits for it (leaving 60 s of budget), notes how it went, and succeeds when it exists.
# L70=N: only N of its 80 layers (a 2-GPU machine's 128 GiB disk cannot hold all 141 GB).
M70=/tmp/llama-3-70b${L70:+-l$L70}
gen70_start() {
  [ -f "$M70/config.json" ] && return 0
  ("$B/tools/gen_checkpoint" --shape llama-3-70b ${L70:+--layers "$L70"} --out "$M70" >"$L/gen70b.log" 2>&1; echo "rc=$?" >>"$L/gen70b.log") &
  GEN70=$!
}
gen70_wait() {
  if [ -n "${GEN70:-}" ]; then
    note "waiting for the 70B checkpoint ($(left) s left)"
    while kill -0 "$GEN70" 2>/dev/null && [ "$(left)" -gt 60 ]; do sleep 2; done
    note "gen_checkpoint llama-3-70b: $(grep -E 'GB/s|rc=' "$L/gen70b.log" | tr '\n' ' ')"
    grep -q 'rc=0' "$L/gen70b.log"
  else
    [ -f "$M70/config.json" ]
  fi
}

# Two GPUs: the 70B checkpoint started in the background (gen70_start) and the 8B one written.
prep_2gpu() {
  export CUDA_VISIBLE_DEVICES=0,1
  gen70_start
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
}
# The consistency test and the goldens on GPU 0.
checks_tp1() {
  step "backend consistency cpu vs cuda" 240 consistency.log env CUDA_VISIBLE_DEVICES=0 "$B/tests/test_backend_consistency"
  step "golden tests on cuda" 90 golden.log env CUDA_VISIBLE_DEVICES=0 SS_TEST_DEVICE=cuda "$B/tests/test_golden"
}
# The 70B shape at tp 2, this build against $OLDB, two interleaved rounds (logs "$L/PREFIX_{new,old}_N.log"),
# once gen70_wait has it.
ab70() {
  gen70_wait || return 0
  for rep in 1 2; do
    for v in new ${OLDB:+old}; do
      bd=$B; [ $v = old ] && bd=$OLDB
      step "70B${L70:+ (${L70} layers)} tp2 b1 [$v] #$rep" 120 "$1_${v}_$rep.log" "$bd/tools/bench_decode" --model "$M70" --device cuda --tp 2 --prompt 128 --gen 256 --json
    done
  done
}
# One line per A/B log "$L/PREFIX*.log" (decode tok/s and the tokens' hash), into the summary.
ab_summary() {
  for f in "$L"/"$1"*.log; do
    echo "$(basename "$f" .log) $(grep -ho '"decode_tok_s":[0-9.]*\|"tokens_fnv":"*[0-9a-fx]*' "$f" | tr '\n' ' ')"
  done | tee -a "$S"
}

# One summary line per bench_decode log given (decode rate, median step, prefill rate, the tokens' hash).
bench_lines() {
  local f
  for f in "$@"; do
    echo "$(basename "$f" .log) $(grep -ho '"warm_tok_s":[0-9.]*\|"median_step_ms":[0-9.]*\|"prefill_tok_s":[0-9.]*\|"tokens_fnv":"*[0-9a-fx]*' "$f" | tr '\n' ' ')"
  done
}

# One GPU (session 16): the consistency test and the goldens, then REPS rounds of bench_decode over CASES
# ("batch:prompt:new tokens[:KV cache type]", the type CASES_KV when not given, else the default) and VARIANTS (new:
# $B; old: $OLDB, when staged; off: $B under OFF_ENV; on: $B under ON_ENV), interleaved, then one summary line per
# log bench_TAG_*.
cases_ab() {
  local tag=$1 reps=$2 cases=$3 variants=$4 rep cs bsz pr gn kv v bd f tpf=()
  export CUDA_VISIBLE_DEVICES=0
  # CASES_TP=N: the bench_decode runs at tp N on GPUs 0..N-1 (the checks stay on GPU 0)
  if [ -n "${CASES_TP:-}" ]; then tpf=(--tp "$CASES_TP"); CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((CASES_TP - 1))); fi
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  if [ -z "${SKIP_CHECKS:-}" ]; then # SKIP_CHECKS=1: an earlier call of the session ran them on this binary
    step "backend consistency cpu vs cuda" 150 consistency.log "$B/tests/test_backend_consistency"
    step "golden tests on cuda" 90 golden.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  fi
  for rep in $(seq 1 "$reps"); do
    for cs in $cases; do
      IFS=: read -r bsz pr gn kv <<<"$cs"
      kv=${kv:-${CASES_KV:-}}
      for v in $variants; do
        [ $v = old ] && [ -z "$OLDB" ] && continue
        bd=$B; [ $v = old ] && bd=$OLDB
        ev=(); [ $v = off ] && read -ra ev <<<"${OFF_ENV:-}"; [ $v = on ] && read -ra ev <<<"${ON_ENV:-}"
        [ -n "$kv" ] && ev+=("SHARDSERVE_KV_CACHE_DTYPE=$kv")
        step "8B ${kv:+$kv }b$bsz prompt $pr [$v] #$rep" 90 "bench_${tag}_b${bsz}_p${pr}${kv:+_$kv}_${v}_$rep.log" env ${ev[@]+"${ev[@]}"} \
          "$bd/tools/bench_decode" --model "$M8" --device cuda ${tpf[@]+"${tpf[@]}"} --batch $bsz --prompt $pr --gen $gn --json
      done
    done
  done
  bench_lines "$L"/bench_"$tag"_*.log | tee -a "$S"
}

# A server on $M8 (--max-batch 256) under the settings SETTINGS ("VAR=V,..." or -), CLIENTS closed-loop clients
# sending REQUESTS requests of 128 in / 128 out after as many warm-up requests as clients, then stopped; logs
# serve_TAG.log and bench_TAG.log and notes the output tok/s and TPOT p50 (sessions 42, 49).
closed_loop() { # closed_loop TAG CLIENTS REQUESTS SETTINGS
  local tag=$1 clients=$2 requests=$3
  variant "$4"
  env ${ev[@]+"${ev[@]}"} "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name m \
    --max-batch 256 >"$L/serve_$tag.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  if [ $ready = 1 ]; then
    step "serve $clients clients 128/128 [$tag]" 120 "bench_$tag.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model m --num-requests "$requests" --concurrency "$clients" --warmup "$clients" --input-len 128 --output-len 128 \
      --seed 1 --json --quiet
    note "$tag: $(grep -ho '"output_tokens_per_s":[0-9.]*' "$L/bench_$tag.log" | head -1) tpot $(grep -o '"tpot_ms":{[^}]*}' "$L/bench_$tag.log" | grep -o '"p50":[0-9.]*')"
  else
    note "FAIL  $tag: server not ready"; tail -3 "$L/serve_$tag.log" | tee -a "$S"
  fi
  kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
}

# kill -9 of the worker of a tp 2 `serve` on $M8 while a 4,000-token stream runs: the server must fail that
# request, exit non-zero and leave no process behind (sessions 13-14). Then kill -9 of the leader: its
# workers must go too.
kill_worker_test() {
  "$B/shardserve" serve --model "$M8" --device cuda --tp 2 --port 8000 --served-model-name m --comm-timeout 20 >"$L/serve_kill.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  note "serve tp 2 ready=$ready after ~$((i / 2)) s"
  if [ $ready = 1 ]; then
    python3 -c '
import json, sys, time, urllib.request
body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 4000, "stream": True, "ignore_eos": True}).encode()
req = urllib.request.Request("http://127.0.0.1:8000/v1/completions", body, {"Content-Type": "application/json"})
n = 0; last = ""
try:
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data:"):
                n += 1; last = line[:300]
except Exception as e:
    last = "exception: %r" % (e,)
print("stream: %d events; last: %s" % (n, last))
' >"$L/kill_client.log" 2>&1 &
    CPID=$!
    sleep 4
    WPID=$(pgrep -f "shardserve worker" | head -1)
    note "killing worker pid ${WPID:-none} (kill -9) at $(date +%s.%N | cut -c1-14)"
    t0=$SECONDS
    [ -n "$WPID" ] && kill -9 "$WPID"
    for k in $(seq 1 120); do kill -0 $SPID 2>/dev/null || break; sleep 0.5; done
    wait $SPID; rc=$?
    note "server exit status $rc after ~$((SECONDS - t0)) s; shardserve processes left: $(pgrep -fc 'shardserve (serve|worker)')"
    wait $CPID
    sed 's/^/      /' "$L/kill_client.log" | tee -a "$S"
    grep -iE "error|fail|lost|abort|rank|exit" "$L/serve_kill.log" | tail -12 | cut -c1-240 | sed 's/^/      /' | tee -a "$S"
  fi
  kill -9 $SPID 2>/dev/null; pkill -9 -f "shardserve worker" 2>/dev/null
  sleep 1
  "$B/shardserve" serve --model "$M8" --device cuda --tp 2 --port 8000 --served-model-name m --comm-timeout 20 >"$L/serve_kill_leader.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  if [ $ready = 1 ]; then
    kill -9 $SPID
    t0=$SECONDS
    for k in $(seq 1 40); do [ "$(pgrep -fc 'shardserve worker')" = 0 ] && break; sleep 0.25; done
    note "kill -9 of the leader: workers left after ~$((SECONDS - t0)) s: $(pgrep -fc 'shardserve worker')"
  fi
  pkill -9 -f "shardserve worker" 2>/dev/null
}
# A tp 2 `serve` of build $1 whose worker is stopped (SIGSTOP) for 5 s mid-stream: the replica must ride it out.
stall_test() {
  local bin=$1
  "$bin/shardserve" serve --model "$M8" --device cuda --tp 2 --port 8000 --served-model-name m --comm-timeout 20 >"$L/serve_stall.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  if [ $ready = 1 ]; then
    python3 -c '
import json, urllib.request
body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 3000, "stream": True, "ignore_eos": True}).encode()
req = urllib.request.Request("http://127.0.0.1:8000/v1/completions", body, {"Content-Type": "application/json"})
n = 0; last = ""; errs = 0
try:
  with urllib.request.urlopen(req, timeout=120) as r:
      for line in r:
          line = line.decode().strip()
          if line.startswith("data:"):
              n += 1; last = line[:200]; errs += "error" in line
except Exception as e:
  last = "exception: %r" % (e,)
print("stream: %d events, %d errors; last: %s" % (n, errs, last))
' >"$L/stall_client.log" 2>&1 &
    CPID=$!
    sleep 3
    WPID=$(pgrep -f "shardserve worker" | head -1)
    [ -n "$WPID" ] && kill -STOP "$WPID"
    sleep 5
    [ -n "$WPID" ] && kill -CONT "$WPID"
    wait $CPID
    alive=$(kill -0 $SPID 2>/dev/null && echo yes || echo no)
    note "stall ($bin): worker ${WPID:-none} stopped 5 s mid-stream; server alive: $alive; $(cat "$L/stall_client.log")"
    grep -iE "error|trap|lost|abort" "$L/serve_stall.log" | tail -4 | cut -c1-200 | sed 's/^/      /' | tee -a "$S"
  else
    note "stall ($bin): server not ready"
  fi
  kill $SPID 2>/dev/null; sleep 1; kill -9 $SPID 2>/dev/null; pkill -9 -f "shardserve worker" 2>/dev/null
  sleep 1
}

# ---- unpack binaries at the paths they were built with (tests hold absolute paths)
tar -C "$W" -xJf .gpu-carry/bin.tar.xz
tar -C "$W" -xJf .gpu-carry/fixtures.tar.xz
BD=$(cat "$W/build_dir.txt")
mkdir -p "$(dirname "$BD")" /work/shared
[ -e "$BD" ] || ln -s "$W/build" "$BD"
[ -e /work/shared/fixtures ] || ln -s "$W/fixtures" /work/shared/fixtures
PYNV=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null)
LIBS=$W/lib:/usr/local/cuda/lib64
for d in "$PYNV"/*/lib "$PYNV"/cu13/lib; do [ -d "$d" ] && LIBS=$LIBS:$d; done
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$BD
# The old build of an A/B (stage-lead.sh's OLD_BUILD), when staged: $OLDB/tools/bench_decode
OLDB=
[ -f .gpu-carry/old.tar.xz ] && mkdir -p "$W/old" && tar -C "$W/old" -xJf .gpu-carry/old.tar.xz && OLDB=$W/old
NG=$(nvidia-smi -L | wc -l)
{ nvidia-smi; nvidia-smi topo -m; ldd "$B/shardserve" | grep -E 'not found|cuda|nccl|cublas'; } >"$L/env.log" 2>&1
note "card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1) x $NG; commit $(cat "$W/commit.txt")"
grep -q 'not found' "$L/env.log" && note "MISSING LIBS: $(grep 'not found' "$L/env.log" | tr '\n' ' ')"

# ---- demo model training (background, last GPU)
if has train && [ -f .gpu-carry/corpus.tar.xz ]; then
  tar -C "$W" -xJf .gpu-carry/corpus.tar.xz
  CUDA_VISIBLE_DEVICES=$((NG - 1)) PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    python3 tools/demo-model/train.py --corpus "$W/.corpus" --minutes "${TRAIN_MIN:-4}" --out "$W/demo" \
    >"$L/train.log" 2>&1 &
  TRAIN_PID=$!
  note "training started on GPU $((NG - 1))"
fi
G0=0
export CUDA_VISIBLE_DEVICES=$G0
M8=/tmp/llama-3-8b
if has bench; then
  ("$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1; echo "rc=$?" >>"$L/gen8b.log") &
  GEN_PID=$!
fi
if has check; then
  step "backend consistency cpu vs cuda" 150 consistency.log "$B/tests/test_backend_consistency"
  step "golden tests on cuda (bf16, tol 2e-2)" 150 golden_cuda.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
fi
if has genv; then
  # Session 43: the goldens on cuda under GENV's settings ("A=1,B=2"; default SS_ATTN_SEQ=1: every decode step's
  # attention through the per-sequence form), real checkpoints against transformers' logits and tokens.
  IFS=, read -ra gev <<<"${GENV:-SS_ATTN_SEQ=1}"
  step "golden tests on cuda [${GENV:-SS_ATTN_SEQ=1}]" 150 golden_cuda_env.log env "${gev[@]}" SS_TEST_DEVICE=cuda "$B/tests/test_golden"
fi
if has bench; then
  wait "$GEN_PID"
  note "gen_checkpoint llama-3-8b: $(grep -E 'GB/s|rc=' "$L/gen8b.log" | tr '\n' ' ')"
  step "decode 8B batch 1 (128 + 256)" 120 bench_b1.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "decode 8B batch 1, no graphs" 120 bench_b1_nog.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json --no-graphs
  for bsz in 8 32 128; do
    step "decode 8B batch $bsz" 120 "bench_b$bsz.log" "$B/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt 128 --gen 64 --json
    step "decode 8B batch $bsz, no graphs" 120 "bench_b${bsz}_nog.log" "$B/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt 128 --gen 64 --json --no-graphs
  done
  step "prefill 8B 2048 tokens" 120 bench_prefill.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 2048 --gen 4 --json
  step "prefill 8B 467 tokens" 60 bench_prefill467.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 467 --gen 4 --json
  step "backend microbenchmarks" 150 microbench.log "$B/tools/bench_backend"
fi
if has sanitize; then
  export CUDA_VISIBLE_DEVICES=$G0
  [ "${SAN_MEM:-1}" = 1 ] && step "compute-sanitizer memcheck (golden, cuda)" 200 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 9 env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  # racecheck reports the bulk copies into shared memory (UBLKCP: cuBLAS's TMA kernels, our persistent
  # kernel) against the reads that wait on their mbarriers: it does not model the transaction count. So the
  # runs below only have to pass their tests, and racecheck_triage.py fails on any hazard but those (the
  # persistent kernel's: checked against its UBLKCP offsets in SASS). RACE_CONS=0 / RACE_OP=0 leave out the
  # consistency test's / the op-by-op goldens' racecheck; SAN_MEM=0 / RACE_PERSIST=0 leave out memcheck / the
  # goldens' racecheck with the persistent kernel; RACE_LIM: the goldens' racecheck deadline (default 300 s;
  # all of them ran ~250 s on an H200 in session 25). The goldens' batch-12 graphs test is left out: under
  # racecheck its process dies without a message (session 25; memcheck passes it).
  # The persistent kernel's spins give up after 2 s, too soon under racecheck: the consistency test's case of
  # it is left out (the goldens run it).
  RC="compute-sanitizer --tool racecheck --print-limit 1000000"
  step "SASS of decode_persist_kernel (bulk copies)" 60 persist_sass.log bash -c \
    "cuobjdump -sass \"$B/tests/test_golden\" | awk '/Function : /{f=/decode_persist_kernel/} f' | grep -E 'UBLKCP|Function'"
  [ "${RACE_CONS:-1}" = 1 ] && step "compute-sanitizer racecheck (consistency): tests pass" 200 racecheck.log $RC env SS_TEST_SKIP=test_decode_layers "$B/tests/test_backend_consistency"
  [ "${RACE_CONS:-1}" = 1 ] && step "racecheck triage (consistency): no hazard but bulk-copy ones" 30 racecheck_triage.log python3 scripts/gpu/racecheck_triage.py "$L/racecheck.log" "$L/persist_sass.log"
  [ "${RACE_PERSIST:-1}" = 1 ] && step "compute-sanitizer racecheck (golden, cuda): tests pass" "${RACE_LIM:-300}" racecheck_golden.log $RC env SS_TEST_DEVICE=cuda \
    SS_TEST_SKIP=test_golden_graphs_equal_eager_lt "$B/tests/test_golden"
  [ "${RACE_PERSIST:-1}" = 1 ] && step "racecheck triage (golden, cuda): no hazard but bulk-copy ones" 30 racecheck_golden_triage.log python3 scripts/gpu/racecheck_triage.py "$L/racecheck_golden.log" "$L/persist_sass.log"
  [ "${RACE_OP:-1}" = 1 ] && step "compute-sanitizer racecheck (golden, cuda, SS_PERSIST=0), no hazard at all" 200 racecheck_golden_op.log compute-sanitizer --tool racecheck --error-exitcode 9 env SS_TEST_DEVICE=cuda SS_PERSIST=0 \
    SS_TEST_SKIP=test_golden_graphs_equal_eager_lt "$B/tests/test_golden"
  for t in racecheck_triage racecheck_golden_triage; do [ -f "$L/$t.log" ] && sed 's/^/      /' "$L/$t.log" | grep -v '^ *HAZARD' | tee -a "$S"; done
fi
if [ -n "${TRAIN_PID:-}" ]; then
  note "waiting for training ($(left) s left)"
  while kill -0 "$TRAIN_PID" 2>/dev/null && [ "$(left)" -gt 5 ]; do sleep 2; done
  wait "$TRAIN_PID" 2>/dev/null; note "training: $(grep -E 'SUMMARY' "$L/train.log" | tail -1)"
  TRAIN_PID=
fi
if has multi && [ "$NG" -ge 2 ]; then
  G=0,1
  [ -z "${TRAIN_PID:-}" ] || [ "$NG" -ge 3 ] || G=0,1
  export CUDA_VISIBLE_DEVICES=$G
  step "golden tp2 on 2 GPUs (NCCL)" 150 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden pp2 on 2 GPUs" 150 golden_pp2.log env SS_TEST_DEVICE=cuda SS_TEST_PP=2 "$B/tests/test_golden"
  step "golden tp2, NCCL socket transport" 150 golden_tp2_sock.log env NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  [ -d "$M8" ] && step "decode 8B tp2 batch 1" 150 bench_tp2.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
fi
if has multi && [ "$NG" -ge 4 ]; then
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  step "golden tp4 on 4 GPUs" 150 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  step "golden tp2 x pp2 on 4 GPUs" 150 golden_tp2pp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
  [ -d "$M8" ] && step "decode 8B tp4 batch 1" 150 bench_tp4.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --prompt 128 --gen 256 --json
fi
if has tp2 && [ "$NG" -ge 2 ]; then
  # tp 2 on one host: the peer-memory all-reduce (default) against NCCL's (SS_PEER_ALLREDUCE=0), with and
  # without graphs, in one run; then the correctness checks of the same code.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "peer all-reduce tests (2 GPUs)" 90 comm_peer.log "$B/tests/test_comm_peer"
  step "golden tp2 (graphs, peer all-reduce)" 150 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden tp2, NCCL all-reduce" 150 golden_tp2_nccl.log env SS_PEER_ALLREDUCE=0 SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden tp2, NCCL socket transport" 150 golden_tp2_sock.log env SS_PEER_ALLREDUCE=0 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden pp2" 150 golden_pp2.log env SS_TEST_DEVICE=cuda SS_TEST_PP=2 "$B/tests/test_golden"
  step "decode 8B tp2 batch 1 (graphs, peer)" 150 bench_tp2.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
  step "decode 8B tp2 batch 1 (graphs, NCCL)" 150 bench_tp2_nccl.log env SS_PEER_ALLREDUCE=0 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
  step "decode 8B tp2 batch 1 (no graphs, peer)" 150 bench_tp2_nog.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json --no-graphs
  step "decode 8B tp2 batch 1 (no graphs, NCCL)" 150 bench_tp2_nog_nccl.log env SS_PEER_ALLREDUCE=0 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json --no-graphs
  step "decode 8B tp2 batch 64 (graphs, peer)" 150 bench_tp2_b64.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --batch 64 --prompt 128 --gen 64 --json
  step "decode 8B tp2 batch 64 (graphs, NCCL)" 150 bench_tp2_b64_nccl.log env SS_PEER_ALLREDUCE=0 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --batch 64 --prompt 128 --gen 64 --json
  step "decode 8B pp2 batch 1" 150 bench_pp2.log "$B/tools/bench_decode" --model "$M8" --device cuda --pp 2 --prompt 128 --gen 128 --json
  export CUDA_VISIBLE_DEVICES=0
  step "decode 8B tp1 batch 1 (same host)" 120 bench_tp1.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "decode 8B tp1 batch 1, rope and kv store unfused" 120 bench_tp1_unfused.log env SS_UNFUSED_ROPE=1 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
fi
if has x4 && [ "$NG" -ge 4 ]; then
  # four GPUs of one host: 8B at tp 1/2/4 (peer all-reduce against NCCL's), the 4-GPU goldens, and a
  # Llama-3-70B-shaped model at tp 4 (its checkpoint is written in the background meanwhile).
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  gen70_start
  step "peer all-reduce tests (GPUs 0, 1)" 90 comm_peer.log "$B/tests/test_comm_peer"
  step "decode 8B tp4 batch 1 (graphs, peer)" 150 bench_x4_tp4.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --prompt 128 --gen 256 --json
  step "decode 8B tp4 batch 1 (graphs, NCCL)" 150 bench_x4_tp4_nccl.log env SS_PEER_ALLREDUCE=0 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --prompt 128 --gen 256 --json
  step "decode 8B tp2 batch 1 (graphs, peer)" 150 bench_x4_tp2.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
  step "decode 8B tp2 batch 1 (peer without PDL)" 150 bench_x4_tp2_nopdl.log env SS_PEER_AR_NO_PDL=1 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
  step "decode 8B tp4 batch 64 (graphs, peer)" 150 bench_x4_tp4_b64.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --batch 64 --prompt 128 --gen 64 --json
  step "decode 8B tp1 batch 1" 120 bench_x4_tp1.log env CUDA_VISIBLE_DEVICES=0 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "golden tp4 (peer all-reduce)" 150 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  step "golden tp2 x pp2" 150 golden_tp2pp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
  step "golden tp4, NCCL socket transport" 150 golden_tp4_sock.log env SS_PEER_ALLREDUCE=0 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  gen70_wait && step "decode 70B tp4 batch 1" 200 bench_x4_70b_tp4.log "$B/tools/bench_decode" --model "$M70" --device cuda --tp 4 --prompt 128 --gen 128 --json
fi
if has s4b && [ "$NG" -ge 2 ]; then
  # Session 4, last call: the shutdown fix at tp 2 (goldens, bench), worker spin on/off, the attention split
  # switch at tp 1, then the serve phase (SERVE_TP=2) follows.
  [ -d "$M8" ] || ("$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1; echo "rc=$?" >>"$L/gen8b.log") &
  G8=$!
  step "backend consistency cpu vs cuda" 240 consistency.log env CUDA_VISIBLE_DEVICES=0 "$B/tests/test_backend_consistency"
  step "golden tests on cuda" 150 golden_cuda.log env CUDA_VISIBLE_DEVICES=0 SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  step "golden tp2" 120 golden_tp2.log env CUDA_VISIBLE_DEVICES=0,1 SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden pp2" 120 golden_pp2.log env CUDA_VISIBLE_DEVICES=0,1 SS_TEST_DEVICE=cuda SS_TEST_PP=2 "$B/tests/test_golden"
  wait "$G8"
  step "8B tp1 b1" 90 bench_s4b_tp1.log env CUDA_VISIBLE_DEVICES=0 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "8B tp1 b1 (split keys 64)" 90 bench_s4b_tp1_sk64.log env CUDA_VISIBLE_DEVICES=0 SS_ATTN_SPLIT_KEYS=64 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "8B tp1 b1 (again)" 90 bench_s4b_tp1_2.log env CUDA_VISIBLE_DEVICES=0 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  step "8B tp2 b1" 90 bench_s4b_tp2.log env CUDA_VISIBLE_DEVICES=0,1 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
  step "8B tp2 b1 (again)" 90 bench_s4b_tp2_2.log env CUDA_VISIBLE_DEVICES=0,1 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
fi
if has x4q && [ "$NG" -ge 4 ]; then
  # A short lease of four GPUs (session 12, ~4 device minutes): the 4-GPU goldens first (tp 4, tp 2 x pp 2,
  # tp 4 over NCCL's sockets), then 8B tp 4 batch 1 under the peer all-reduce's two protocols and NCCL's.
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  [ -d "$M8" ] || ("$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1) &
  G8=$!
  step "golden tp4 (peer all-reduce by content)" 90 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  step "golden tp2 x pp2" 90 golden_tp2pp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
  step "golden tp4, NCCL socket transport" 90 golden_tp4_sock.log env SS_PEER_ALLREDUCE=0 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  wait "$G8"
  for e in - SS_PEER_ALLREDUCE=0; do
    variant "$e"
    step "8B tp4 b1 [$e]" 60 "bench_x4q_tp4_$vtag.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --prompt 128 --gen 256 --json
  done
fi
if has x4p && [ "$NG" -ge 2 ]; then
  # Session 13: the persistent decode kernel at tp > 1 (its o and down sums cross the group through peer
  # windows inside the kernel). Goldens at tp 2 / 4 (and pp / sockets, which keep the op-by-op path), then
  # 8B batch 1 at tp 2 / 4 against SS_PERSIST=0 (the op-by-op path), interleaved, and 70B at tp 4.
  X70=0
  [ "$NG" -ge 4 ] && [ "${X4P_70B:-1}" = 1 ] && X70=1 && gen70_start
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  export CUDA_VISIBLE_DEVICES=0,1
  step "peer all-reduce tests (GPUs 0, 1)" 60 comm_peer.log "$B/tests/test_comm_peer"
  step "golden tp2 (persistent at tp 2)" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  if [ "$NG" -ge 4 ]; then
    export CUDA_VISIBLE_DEVICES=0,1,2,3
    step "golden tp4 (persistent at tp 4)" 90 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
    step "golden tp2 x pp2" 90 golden_tp2pp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
    step "golden tp4, NCCL socket transport" 90 golden_tp4_sock.log env SS_PEER_ALLREDUCE=0 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  fi
  for rep in 1 2; do
    for tp in ${X4P_TPS:-2 4}; do
      [ "$tp" -gt "$NG" ] && continue
      cvd=$(seq -s, 0 $((tp - 1)))
      for e in - SS_PERSIST=0; do
        variant "$e"
        step "8B tp$tp b1 [$e] #$rep" 60 "bench_x4p_tp${tp}_${vtag}_$rep.log" env CUDA_VISIBLE_DEVICES=$cvd ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 256 --json
      done
    done
  done
  step "8B tp1 b1" 60 bench_x4p_tp1.log env CUDA_VISIBLE_DEVICES=0 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  if [ "$X70" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=0,1,2,3
    if gen70_wait; then
      for e in - SS_PERSIST=0 -; do
        variant "$e"
        step "70B tp4 b1 [$e]" 120 "bench_x4p_70b_$vtag.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M70" --device cuda --tp 4 --prompt 128 --gen 256 --json
      done
    fi
  fi
  grep -h '^{' "$L"/bench_x4p_*.log 2>/dev/null | sed 's/^/    /' | tee -a "$S" >/dev/null
fi
if has x4t && [ "$NG" -ge 4 ]; then
  # The persistent kernel's timeline of one eager step's middle layer (SS_PERSIST_TRACE) at tp 1, 2 and 4.
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for tp in 1 2 4; do
    cvd=$(seq -s, 0 $((tp - 1)))
    step "8B tp$tp b1 trace (eager)" 60 "trace_x4t_tp$tp.log" env CUDA_VISIBLE_DEVICES=$cvd SS_PERSIST_TRACE=40 "$B/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 64 --json --no-graphs
    [ -n "${X4T_BENCH:-}" ] && step "8B tp$tp b1 (eager)" 60 "bench_x4t_tp$tp.log" env CUDA_VISIBLE_DEVICES=$cvd "$B/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 256 --json --no-graphs
  done
fi
if has peer && [ "$NG" -ge 2 ]; then
  step "peer all-reduce and window tests (GPUs 0, 1)" 60 comm_peer.log env CUDA_VISIBLE_DEVICES=0,1 "$B/tests/test_comm_peer"
fi
if has x70t && [ "$NG" -ge 4 ]; then
  # The persistent kernel's timeline of a 70B-shaped step at tp 4 (eager): do its GEMV phases run at the
  # bus rate (session 13: ~137 us a layer against ~102 us of weights per rank)?
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  gen70_start
  gen70_wait && step "70B tp4 b1 trace (eager)" 90 trace_x70t.log env SS_PERSIST_TRACE=40 "$B/tools/bench_decode" --model "$M70" --device cuda --tp 4 --prompt 128 --gen 48 --json --no-graphs
fi
if has mergeab; then
  # For session 14: the persistent kernel's wide merge of the key splits (SS_PERSIST_MERGE=wide, opt-in).
  # Correctness first (consistency, goldens, tokens), then batch 1 interleaved at tp 1 (and tp 4 on 4 GPUs).
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "backend consistency, wide merge" 150 consistency_wide.log env CUDA_VISIBLE_DEVICES=0 SS_PERSIST_MERGE=wide "$B/tests/test_backend_consistency"
  step "golden tests on cuda, wide merge" 150 golden_wide.log env CUDA_VISIBLE_DEVICES=0 SS_PERSIST_MERGE=wide SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  [ "$NG" -ge 2 ] && step "golden tp2, wide merge" 120 golden_tp2_wide.log env CUDA_VISIBLE_DEVICES=0,1 SS_PERSIST_MERGE=wide SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  [ "$NG" -ge 4 ] && step "golden tp4, wide merge" 120 golden_tp4_wide.log env CUDA_VISIBLE_DEVICES=0,1,2,3 SS_PERSIST_MERGE=wide SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  for rep in 1 2 3; do
    for tp in ${MERGE_TPS:-1 2 4}; do
      [ "$tp" -gt "$NG" ] && continue
      for e in - SS_PERSIST_MERGE=wide; do
        variant "$e"
        step "8B tp$tp b1 [$e] #$rep" 60 "bench_mergeab_tp${tp}_${vtag}_$rep.log" env CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((tp - 1))) ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 256 --json
      done
    done
  done
fi
if has x2k && [ "$NG" -ge 2 ]; then
  # Session 13: a tp 2 replica whose batch-1 steps run in the persistent kernel (its sums cross the GPUs
  # inside the kernel): the peer tests (windows too), a serving soak, and kill -9 of the worker while a
  # long request streams: the server must fail that request, exit non-zero, and leave no process behind.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "peer all-reduce and window tests (GPUs 0, 1)" 60 comm_peer.log "$B/tests/test_comm_peer"
  step "golden tp2" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "serving soak on cuda tp 2 (${SOAK_N:-3000} requests, ${SOAK_S:-45} s)" 120 soak_tp2.log env SOAK_SERVER_ARGS="--device cuda --tp 2" \
    python3 tests/serve/soak.py "$B/shardserve" /work/shared/fixtures "${SOAK_N:-3000}" "${SOAK_S:-45}"
  grep -h "^soak:\|FAIL" "$L/soak_tp2.log" | tee -a "$S"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  kill_worker_test
  for tp in 2; do
    for e in - SS_PERSIST=0 -; do
      variant "$e"
      step "8B tp$tp b1 [$e]" 60 "bench_x2k_tp${tp}_${vtag}.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 256 --json
    done
  done
fi
if has s14 && [ "$NG" -ge 2 ]; then
  # Session 14: the wide merge by default above 16 key splits, and spins at tp > 1 that wait for the
  # communicator's deadline instead of trapping after 2 s. Correctness, a stalled worker (SIGSTOP 5 s) that
  # the replica must ride out, then A/B against the old build ($OLDB) at 8B tp 1/2 and 70B tp 2.
  prep_2gpu
  step "peer all-reduce and window tests (GPUs 0, 1)" 60 comm_peer.log "$B/tests/test_comm_peer"
  checks_tp1
  step "golden tp2" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden tp2, chunked merge" 90 golden_tp2_chunked.log env SS_PERSIST_MERGE=chunked SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for bin in "$B" ${OLDB:+"$OLDB"}; do stall_test "$bin"; done
  for rep in 1 2; do
    for tp in 1 2; do
      for v in new ${OLDB:+old} chunked; do
        bd=$B; [ $v = old ] && bd=$OLDB
        ev=(); [ $v = chunked ] && ev=(SS_PERSIST_MERGE=chunked)
        [ $v = chunked ] && [ $tp = 1 ] && continue
        step "8B tp$tp b1 [$v] #$rep" 60 "bench_s14_tp${tp}_${v}_$rep.log" env CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((tp - 1))) ${ev[@]+"${ev[@]}"} "$bd/tools/bench_decode" --model "$M8" --device cuda --tp "$tp" --prompt 128 --gen 256 --json
      done
    done
  done
  if gen70_wait; then
    for rep in 1 2; do
      for v in new ${OLDB:+old} chunked; do
        bd=$B; [ $v = old ] && bd=$OLDB
        ev=(); [ $v = chunked ] && ev=(SS_PERSIST_MERGE=chunked)
        step "70B${L70:+ (${L70} layers)} tp2 b1 [$v] #$rep" 120 "bench_s14_70b_tp2_${v}_$rep.log" env ${ev[@]+"${ev[@]}"} "$bd/tools/bench_decode" --model "$M70" --device cuda --tp 2 --prompt 128 --gen 256 --json
      done
    done
  fi
fi
if has splits && [ "$NG" -ge 2 ]; then
  # Session 15: how many key splits an attention item should hold at batch 1. The launcher gives each kv head
  # sms / kv_heads splits, at most 32: at 8B tp 2 (4 kv heads a rank) that is 32 splits of ~8 keys at a 256
  # bound. The timeline at tp 2, then SS_PERSIST_SPLITS caps against the default at tp 2, tp 1 and the 70B shape.
  prep_2gpu
  step "8B tp2 trace" 60 trace_tp2.log env SS_PERSIST_TRACE=100 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 128 --no-graphs --json
  grep -A30 'persistent decode, tp rank 0' "$L/trace_tp2.log" | head -32 | tee -a "$S"
  for rep in 1 2 3; do
    for sp in 0 16 8; do
      step "8B tp2 b1 [splits ${sp/#0/default}] #$rep" 60 "bench_splits_tp2_${sp}_$rep.log" env SS_PERSIST_SPLITS=$sp "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
    done
    for sp in 0 8; do
      step "8B tp1 b1 [splits ${sp/#0/default}] #$rep" 60 "bench_splits_tp1_${sp}_$rep.log" env CUDA_VISIBLE_DEVICES=0 SS_PERSIST_SPLITS=$sp "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
    done
  done
  if gen70_wait; then
    for rep in 1 2; do
      for sp in 0 16; do
        step "70B${L70:+ (${L70} layers)} tp2 b1 [splits ${sp/#0/default}] #$rep" 120 "bench_splits_70b_${sp}_$rep.log" env SS_PERSIST_SPLITS=$sp "$B/tools/bench_decode" --model "$M70" --device cuda --tp 2 --prompt 128 --gen 256 --json
      done
    done
  fi
fi
if has merge1 && [ "$NG" -ge 2 ]; then
  # Session 15: merge_one (a head's key splits merged with every load of a round in flight, statistics by
  # shuffle) as the default at every split count. Correctness at tp 1 and tp 2, the timeline at tp 2, then A/B
  # against the build before ($OLDB) and the other merges of the same binary, 8B tp 1 / tp 2 and the 70B shape.
  prep_2gpu
  checks_tp1
  step "golden tp2" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "8B tp2 trace" 60 trace_tp2.log env SS_PERSIST_TRACE=100 "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 128 --no-graphs --json
  grep -A30 'persistent decode, tp rank 0' "$L/trace_tp2.log" | grep -E 'attn|layer period' | tee -a "$S"
  step "8B tp1 trace" 60 trace_tp1.log env CUDA_VISIBLE_DEVICES=0 SS_PERSIST_TRACE=100 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 128 --no-graphs --json
  grep -A30 'persistent decode, tp rank 0' "$L/trace_tp1.log" | grep -E 'attn|layer period' | tee -a "$S"
  for rep in 1 2 3; do
    for v in new ${OLDB:+old} wide; do
      bd=$B; [ $v = old ] && bd=$OLDB
      ev=(); [ $v = wide ] && ev=(SS_PERSIST_MERGE=wide)
      step "8B tp2 b1 [$v] #$rep" 60 "bench_m1_tp2_${v}_$rep.log" env ${ev[@]+"${ev[@]}"} "$bd/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json
    done
    for v in new ${OLDB:+old} chunked; do
      bd=$B; [ $v = old ] && bd=$OLDB
      ev=(); [ $v = chunked ] && ev=(SS_PERSIST_MERGE=chunked)
      step "8B tp1 b1 [$v] #$rep" 60 "bench_m1_tp1_${v}_$rep.log" env CUDA_VISIBLE_DEVICES=0 ${ev[@]+"${ev[@]}"} "$bd/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
    done
  done
  ab70 bench_m1_70b
  ab_summary bench_m1_
fi
if has pp && [ "$NG" -ge 2 ]; then
  # Session 15: where pipelines stand (pp 2 runs each step within submit; tp > 1 overlaps since session 14),
  # and the persistent kernel on pipeline stages at tp 1: 8B pp 2 against the build before ($OLDB, op by op
  # on stages), tp 2 and tp 1, batch 1 and 8, interleaved; the goldens at pp 2 and each rank's tokens first.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "golden pp2" 90 golden_pp2.log env SS_TEST_DEVICE=cuda SS_TEST_PP=2 "$B/tests/test_golden"
  step "test_sharded on cuda" 120 sharded_cuda.log env SS_TEST_DEVICE=cuda "$B/tests/test_sharded"
  for rep in 1 2; do
    for v in new ${OLDB:+old} tp2 tp1; do
      bd=$B; cfg="--pp 2"; [ $v = old ] && bd=$OLDB; [ $v = tp2 ] && cfg="--tp 2"; [ $v = tp1 ] && cfg="--tp 1"
      for bsz in 1 8; do
        g=256; [ $bsz = 8 ] && g=128
        step "8B ${cfg} b$bsz [$v] #$rep" 60 "bench_pp_${v}_b${bsz}_$rep.log" "$bd/tools/bench_decode" --model "$M8" --device cuda $cfg --batch $bsz --prompt 128 --gen $g --json
      done
    done
  done
  ab_summary bench_pp_
fi
if has pptp && [ "$NG" -ge 4 ]; then
  # Session 15 (first run in session 26, 4 x H200: passed, +13.6% at batch 1, now the default): the persistent
  # kernel on tensor-parallel pipeline stages against SS_PERSIST_PP_TP=0 (op by op). The goldens at tp 2 x pp 2
  # both ways, then 8B tp 2 x pp 2 batch 1 and 8 with and without it, interleaved.
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for e in - SS_PERSIST_PP_TP=0; do
    variant "$e"
    step "golden tp2 x pp2 [$e]" 150 "golden_pptp_$vtag.log" env ${ev[@]+"${ev[@]}"} SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
    step "test_sharded on cuda [$e]" 120 "sharded_pptp_$vtag.log" env ${ev[@]+"${ev[@]}"} SS_TEST_DEVICE=cuda "$B/tests/test_sharded"
  done
  for rep in 1 2 3; do
    for e in - SS_PERSIST_PP_TP=0; do
      variant "$e"
      for bsz in 1 8; do
        g=256; [ $bsz = 8 ] && g=128
        step "8B tp2 x pp2 b$bsz [$e] #$rep" 60 "bench_pptp_${vtag}_b${bsz}_$rep.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --pp 2 --batch $bsz --prompt 128 --gen $g --json
      done
    done
  done
  ab_summary bench_pptp_
fi
if has ovl && [ "$NG" -ge 2 ]; then
  # Session 14: tp > 1 steps that overlap (greedy tokens combined on every rank's device, the next step
  # submitted before the previous one is collected, on the leader and on the workers). Correctness, failure
  # handling, then batch 1 and 8 at tp 2 against the build before ($OLDB) and --no-overlap, and 70B tp 2.
  prep_2gpu
  step "backend consistency cpu vs cuda" 240 consistency.log env CUDA_VISIBLE_DEVICES=0 "$B/tests/test_backend_consistency"
  step "golden tp2" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden pp2" 90 golden_pp2.log env SS_TEST_DEVICE=cuda SS_TEST_PP=2 "$B/tests/test_golden"
  step "serving soak on cuda tp 2 (${SOAK_N:-3000} requests, ${SOAK_S:-45} s)" 120 soak_tp2.log env SOAK_SERVER_ARGS="--device cuda --tp 2" \
    python3 tests/serve/soak.py "$B/shardserve" /work/shared/fixtures "${SOAK_N:-3000}" "${SOAK_S:-45}"
  grep -h "^soak:\|FAIL" "$L/soak_tp2.log" | tee -a "$S"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  kill_worker_test
  stall_test "$B"
  for rep in 1 2; do
    for v in new ${OLDB:+old} nooverlap; do
      bd=$B; fl=(); [ $v = old ] && bd=$OLDB; [ $v = nooverlap ] && fl=(--no-overlap)
      step "8B tp2 b1 [$v] #$rep" 60 "bench_ovl_tp2_b1_${v}_$rep.log" "$bd/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json ${fl[@]+"${fl[@]}"}
      step "8B tp2 b8 [$v] #$rep" 60 "bench_ovl_tp2_b8_${v}_$rep.log" "$bd/tools/bench_decode" --model "$M8" --device cuda --tp 2 --batch 8 --prompt 128 --gen 128 --json ${fl[@]+"${fl[@]}"}
    done
  done
  ab70 bench_ovl_70b_tp2
fi
if has attn2; then
  # Session 16, call 5: decode tiles of the tensor-core attention keep two key tiles in flight (Q in rows of its
  # own, both stages loading from the start), against the build before ($OLDB), short and long contexts.
  cases_ab a2 2 "${ATTN2_CASES:-32:128:64 128:128:64 64:1024:64 8:4000:64 1:4000:64}" "new old"
fi
if has s16b; then
  # Session 16, call 6: shifts for the cache's block size in the tensor-core attention (and a barrier removed
  # from the persistent kernel's last split, since reverted): batch 1 (persistent), 32 and 128 at 128 tokens,
  # 64 at 1024 and a 2,048-token prefill against $OLDB. (Call 8's "decode items in turn" ran the same way with
  # a third variant, its switch off; the code is gone, docs/performance.md has the numbers.)
  cases_ab s16b 3 "1:128:256 128:128:64 ${S16B_MORE:-32:128:64 64:1024:64 1:2048:4}" "new old"
fi
# One GPU: the tensor-core attention alone (bench_backend --attn-sweep), its lines into the summary.
# SWEEP_BIN: another build's bench_backend (the old build's, a variant's), its lines tagged as TAG says.
attn_sweep() { # attn_sweep [TAG [bench_backend args...]]
  local tag=${1:-}
  [ $# -gt 0 ] && shift
  export CUDA_VISIBLE_DEVICES=0
  step "attention sweep${tag:+ [$tag]}" 200 "attn_sweep${tag:+_$tag}.log" "${SWEEP_BIN:-$B/tools/bench_backend}" --attn-sweep --iters 50 "$@"
  grep '^attn' "$L/attn_sweep${tag:+_$tag}.log" | sed "s/^/${tag:+$tag }/" | tee -a "$S"
}
if has s18t && [ "$NG" -ge 2 ]; then
  # Session 18: the fp8 KV cache at tp 2 (2 GPUs): the goldens with each cache, then 8B batch 128 at 1,024-token
  # prompts with each cache.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || ("$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1) &
  G8=$!
  step "golden tp2, bf16 KV cache" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "golden tp2, fp8 KV cache" 90 golden_tp2_fp8.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_KV=fp8 "$B/tests/test_golden"
  grep -h '^golden' "$L/golden_tp2.log" "$L/golden_tp2_fp8.log" | tee -a "$S"
  wait "$G8"
  for kv in auto fp8; do
    step "8B tp2 b128 prompt 1024 [kv $kv]" 90 "bench_s18t_$kv.log" env SHARDSERVE_KV_CACHE_DTYPE=$kv \
      "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --batch 128 --prompt 1024 --gen 64 --json
    echo "$kv $(grep -ho '"warm_tok_s":[0-9.]*\|"prefill_tok_s":[0-9.]*' "$L/bench_s18t_$kv.log" | tr '\n' ' ')" | tee -a "$S"
  done
fi
if has dense; then
  # Session 48: the fp8 decode tiles' dense form (held to 128 registers, 4 CTAs a SM). The attention consistency cases
  # (with the forced dense form and forced splits), the per-form sweep at forced split counts for an fp8 and a bf16
  # cache (bench_backend --attn-dense), then 8B decode steps with an fp8 cache as the launcher picks (auto) against
  # the dense form off (SS_ATTN_SHORT=0), interleaved, DENSE_REPS rounds. DENSE_KV=auto: the steps with a bf16 cache
  # (the 32-key form's rule) instead; DENSE_CONS=0 skips the consistency cases (phase check runs them all);
  # DENSE_GOLDEN=1 runs the goldens with an fp8 cache too.
  export CUDA_VISIBLE_DEVICES=0
  [ "${DENSE_CONS:-1}" = 1 ] && step "consistency, attention cases" 150 consistency_dense.log env SS_TEST_ONLY='*attention*' "$B/tests/test_backend_consistency"
  [ "${DENSE_GOLDEN:-0}" = 1 ] && step "golden tests on cuda, fp8 KV cache" 90 golden_fp8.log env SS_TEST_DEVICE=cuda SS_TEST_KV=fp8 "$B/tests/test_golden"
  step "attention per form and split count [fp8]" 240 attn_dense_fp8.log "$B/tools/bench_backend" --attn-dense --kv fp8 --iters 40
  grep -c '^attn' "$L/attn_dense_fp8.log" | sed 's/^/fp8 dense sweep lines: /' | tee -a "$S"
  [ "${DENSE_BF16:-1}" = 1 ] && step "attention per form and split count [bf16]" 240 attn_dense_bf16.log "$B/tools/bench_backend" --attn-dense --iters 40
  SKIP_CHECKS=1 CASES_KV=${DENSE_KV:-fp8} OFF_ENV="SS_ATTN_SHORT=0" cases_ab dense "${DENSE_REPS:-1}" \
    "${DENSE_CASES:-256:1024:64 128:1024:64 64:1024:64 32:4096:64}" "new off"
fi
if has seq8; then
  # Session 49: the decode form of a CTA per sequence for an fp8 cache (32-key stages of e4m3 rows). The attention
  # consistency cases (SEQ8_CONS=0 skips them) and the goldens with an fp8 cache and the form forced, then 8B decode
  # steps with an fp8 cache, the form forced on (SS_ATTN_SEQ=1) against off, interleaved, SEQ8_REPS rounds over
  # SEQ8_CASES ("batch:prompt:new tokens"; prompt 128 + 64 new: a graph bound of 256, 384 + 64: 512); SEQ8_VARIANTS
  # (default "on off"; new: the launcher's rule).
  export CUDA_VISIBLE_DEVICES=0
  [ "${SEQ8_CONS:-1}" = 1 ] && step "consistency, attention cases" 150 consistency_seq8.log env SS_TEST_ONLY='*attention*' "$B/tests/test_backend_consistency"
  [ "${SEQ8_CONS:-1}" = 1 ] && step "golden tests on cuda, fp8 KV cache, the form forced" 90 golden_seq8.log env SS_ATTN_SEQ=1 SS_TEST_DEVICE=cuda SS_TEST_KV=fp8 "$B/tests/test_golden"
  SKIP_CHECKS=1 CASES_KV=${SEQ8_KV:-fp8} ON_ENV="SS_ATTN_SEQ=1" OFF_ENV="SS_ATTN_SEQ=0" cases_ab seq8 "${SEQ8_REPS:-1}" \
    "${SEQ8_CASES:-64:128:64 96:128:64 128:128:64 256:128:64 128:384:64 256:384:64}" "${SEQ8_VARIANTS:-on off}"
fi
if has bucket; then
  # Sessions 49-50: graph steps padded to a multiple of a bucket from twice that on, instead of the next power of two
  # (batch 160 then runs 160 rows, not 256); the default since session 50 (8). 8B decode steps over BUCKET_CASES
  # ("batch:prompt:new tokens:cache"), BUCKET_VARIANTS (default "on new"; on: SS_GRAPH_BUCKET=BUCKET_SIZE, default 16;
  # off: SS_GRAPH_BUCKET=0, powers of two; new: the default) interleaved, BUCKET_REPS rounds; then a server at
  # BUCKET_CLIENTS closed-loop clients (128 in / 128 out) with the switch and without.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  step "golden tests on cuda" 90 golden_bucket.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  SKIP_CHECKS=1 ON_ENV="SS_GRAPH_BUCKET=${BUCKET_SIZE:-16}" OFF_ENV="SS_GRAPH_BUCKET=0" cases_ab bucket "${BUCKET_REPS:-1}" \
    "${BUCKET_CASES:-72:128:64:auto 104:128:64:auto 200:128:64:auto 200:128:64:fp8}" "${BUCKET_VARIANTS:-on new}"
  closed_loop bucket_serve_on "${BUCKET_CLIENTS:-200}" $((4 * ${BUCKET_CLIENTS:-200})) "SS_GRAPH_BUCKET=${BUCKET_SIZE:-16}"
  closed_loop bucket_serve_new "${BUCKET_CLIENTS:-200}" $((4 * ${BUCKET_CLIENTS:-200})) -
fi
if has ramp; then
  # Session 51: what capturing decode graphs on first use costs a server. Per RAMP_VARIANTS (default "-"), one server
  # (--log-level debug: each capture's recording and instantiating times) takes RAMP_REQ requests (default 1500) at
  # RAMP_RATE req/s (Poisson, default 120; 128 in, RAMP_OUT out, default 32:256, seed 1) twice: cold (graphs captured
  # as batches first reach their sizes) and warm (the same arrivals, every graph captured). RAMP_GOLDEN=0 skips the
  # goldens on cuda first; RAMP_ARGS: more serve flags (--no-prefix-cache: the second run's prompts, the same as the
  # first's, would otherwise skip their prefill); RAMP_RUNS: the runs' names (default "cold warm"), each with
  # :SEED to send other prompts and arrivals than seed 1's.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  if [ "${RAMP_GOLDEN:-1}" = 1 ]; then
    step "golden tests on cuda" 120 golden_ramp.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
    grep -E 'PASSED|FAILED' "$L/golden_ramp.log" | tee -a "$S"
  fi
  for rv in ${RAMP_VARIANTS:--}; do
    variant "$rv"
    env ${ev[@]+"${ev[@]}"} "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --served-model-name m \
      --max-batch 256 --log-level debug ${RAMP_ARGS:-} >"$L/serve_ramp_$vtag.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    if [ $ready = 1 ]; then
      grep -ho 'warm-up: .*\|ready as .*' "$L/serve_ramp_$vtag.log" | sed "s/^/[$vtag] /" | tee -a "$S"
      for rs in ${RAMP_RUNS:-cold warm}; do
        IFS=: read -r run seed <<<"$rs"
        step "ramp $run [$vtag]" 150 "bench_ramp_${vtag}_$run.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
          --model m --num-requests "${RAMP_REQ:-1500}" --request-rate "${RAMP_RATE:-120}" --input-len 128 \
          --output-len-range "${RAMP_OUT:-32:256}" --seed "${seed:-1}" --json --quiet --requests-out "$L/req_ramp_${vtag}_$run.jsonl"
        python3 - "$L/bench_ramp_${vtag}_$run.log" "$run [$vtag]" <<'PY' | tee -a "$S"
import json, sys
t = open(sys.argv[1]).read()
r = json.loads(t[t.index('{'):])
f = lambda k: ' '.join('%s %.1f' % (q, r[k][q]) for q in ('p50', 'p90', 'p99', 'max'))
print('ramp %s: out %.0f tok/s; ttft %s; itl %s; tpot p50 %.2f' % (sys.argv[2], r['throughput']['output_tokens_per_s'], f('ttft_ms'),
      f('itl_ms'), r['tpot_ms']['p50']))
PY
        python3 - "$L/req_ramp_${vtag}_$run.jsonl" <<'PY' | tee -a "$S"
import json, sys
rs = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: -(r.get('itl_max_ms') or 0))
print('longest gaps (ms, request, after token): ' + ' '.join('%.0f@%d:%d' % (r['itl_max_ms'], r['i'], r['itl_max_after'])
                                                          for r in rs[:6]))
PY
        note "after $run: $(grep -c 'captured: recording' "$L/serve_ramp_$vtag.log") captures, $(grep -c 'cuBLASLt plan' \
          "$L/serve_ramp_$vtag.log") cuBLASLt plans made ($(grep -c 'evicting' "$L/serve_ramp_$vtag.log") evicting)"
      done
      python3 - "$L/serve_ramp_$vtag.log" <<'PY' | tee -a "$S"
import re, sys
rows = re.findall(r'graph of (\d+) tokens \(bound (\d+)\) captured: recording ([\d.]+) ms, instantiating ([\d.]+) ms',
                  open(sys.argv[1]).read())
if rows:
    rec = sorted(float(r[2]) for r in rows); ins = sorted(float(r[3]) for r in rows)
    print('captures %d: recording median %.2f max %.2f sum %.0f ms; instantiating median %.2f max %.2f sum %.0f ms'
          % (len(rows), rec[len(rec) // 2], rec[-1], sum(rec), ins[len(ins) // 2], ins[-1], sum(ins)))
    print('shapes: ' + ' '.join('%s@%s' % (r[0], r[1]) for r in rows))
runs = [(int(n), int(r), int(t)) for r, n, t in
        re.findall(r'request (\d+): text again after (\d+) tokens without any, at token (\d+)', open(sys.argv[1]).read())]
if runs:
    runs.sort(reverse=True)
    print('runs of >= 8 tokens without text: %d; longest (tokens, request, at token): %s'
          % (len(runs), ' '.join('%d@%d:%d' % r for r in runs[:8])))
enq = sorted(float(m) for m in re.findall(r'256 steps op by op, enqueued in ([\d.]+) ms on average', open(sys.argv[1]).read()))
if enq:
    print('steps op by op: %d × 256, mean enqueue time per step median %.3f ms (min %.3f, max %.3f)'
          % (len(enq), enq[len(enq) // 2], enq[0], enq[-1]))
PY
    else
      note "FAIL  ramp [$vtag]: server not ready"; tail -3 "$L/serve_ramp_$vtag.log" | tee -a "$S"
    fi
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
  done
fi
if has s18b; then
  # The fp8 attention of this build against $OLDB's (session 18: K's fragments from the e4m3 rows; session 47: K's
  # and V's, the decode tiles): the fp8 consistency cases and goldens, the fp8 sweep of both builds, then bench_decode
  # with an fp8 cache on both builds, interleaved.
  export CUDA_VISIBLE_DEVICES=0
  step "consistency, fp8 and attention cases" 120 consistency_fp8.log env SS_TEST_ONLY='*attention*' "$B/tests/test_backend_consistency"
  step "consistency, fp8 store cases" 60 consistency_fp8s.log env SS_TEST_ONLY='*fp8*' "$B/tests/test_backend_consistency"
  step "golden tests on cuda, fp8 KV cache" 90 golden_fp8.log env SS_TEST_DEVICE=cuda SS_TEST_KV=fp8 "$B/tests/test_golden"
  grep '^golden' "$L/golden_fp8.log" | tee -a "$S"
  attn_sweep fp8 --kv fp8
  # session 47: the old build's fp8 sweep in the same call
  [ -x "$OLDB/tools/bench_backend" ] && SWEEP_BIN=$OLDB/tools/bench_backend attn_sweep fp8-old --kv fp8
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for rep in 1 2; do
    for cs in ${S18B_CASES:-256:1024:64 128:1024:64 64:1024:64 32:4096:64}; do
      IFS=: read -r bsz pr gn <<<"$cs"
      for v in new old; do
        bd=$B; [ $v = old ] && bd=$OLDB
        step "8B fp8 b$bsz prompt $pr [$v] #$rep" 90 "bench_s18b_b${bsz}_p${pr}_${v}_$rep.log" env SHARDSERVE_KV_CACHE_DTYPE=fp8 \
          "$bd/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt $pr --gen $gn --json
      done
    done
  done
  bench_lines "$L"/bench_s18b_*.log | tee -a "$S"
fi
if has f8var; then
  # Session 47: the fp8 sweep of other builds of bench_backend (.gpu-carry/variants/NAME.xz, xz-compressed; e.g. other
  # stage counts or register caps of the fp8 decode tiles), each tagged with its NAME, beside this build's.
  export CUDA_VISIBLE_DEVICES=0
  attn_sweep fp8 --kv fp8
  for vx in .gpu-carry/variants/*.xz; do
    [ -f "$vx" ] || continue
    vn=$(basename "$vx" .xz); xz -dc "$vx" >"$W/$vn" && chmod +x "$W/$vn"
    SWEEP_BIN=$W/$vn attn_sweep "fp8-$vn" --kv fp8
  done
fi
if has s18s; then
  # Session 18: serving on one H200 with a bf16 and an fp8 KV cache (the flag's environment twin), S18S_N requests
  # of 1000 in / 1000 out all at once; the KV-cache size each got is in its log.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in ${S18S_VARIANTS:-auto fp8}; do
    SHARDSERVE_KV_CACHE_DTYPE=$v "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 \
      --served-model-name llama-3-8b --max-batch "${S18S_BATCH:-256}" --max-step-tokens 2048 --max-waiting 4096 >"$L/serve_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    [ $ready = 1 ] && step "serve ${S18S_N:-500} x 1000/1000 [kv $v]" 170 "bench_s18s_$v.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model llama-3-8b --num-requests "${S18S_N:-500}" --input-len 1000 --output-len 1000 --seed 1 --json --quiet
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    echo "$v $(grep -ho '"output_tokens_per_s":[0-9.]*\|"duration_s":[0-9.]*' "$L/bench_s18s_$v.log" | tr '\n' ' ') $(grep -o 'KV cache: [^)]*)' "$L/serve_$v.log" | head -1)" | tee -a "$S"
  done
fi
if has s18p; then
  # Session 18: Nsight Compute on one decode attention launch (batch 256, context 2048) with a bf16 and an fp8
  # cache: speed of light, occupancy, and where the warps stall.
  export CUDA_VISIBLE_DEVICES=0
  for kv in auto fp8; do
    step "ncu attention b256 ctx2048 [$kv]" 150 "ncu_$kv.log" ncu --clock-control none --kernel-name regex:attn_tiled \
      --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy --section SchedulerStats \
      --section WarpStateStats --section MemoryWorkloadAnalysis --metrics regex:smsp__warp_issue_stalled_.*_per_warp_active.pct \
      "$B/tools/bench_backend" --attn-case "${S18P_CASE:-256:2048}" --iters 1 --kv "$kv"
    grep -E "attn_tiled|Duration|Throughput|Warp Cycles|Issued Warp|Eligible|Occupancy|Block Limit|Registers Per|Dynamic Shared|Bank|stalled" "$L/ncu_$kv.log" \
      | grep -v " 0$\| 0.00$\|  0$" | sed "s/^/$kv /" | tee -a "$S"
  done
fi
if has s20a; then
  # Session 20, call 1: fp8 weights with a scale a row and activations with a scale a token (cuBLASLt outer-vector
  # scales). The consistency test (bytes, linear, a token's independence of the others), the goldens with fp8
  # weights and with bf16 (both with the batch-12 graphs check), then bench_decode: q8 (this build, fp8), q8old
  # ($OLDB, session 19's scale a matrix), bf16 (this build, none), interleaved.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "backend consistency cpu vs cuda" 150 consistency.log "$B/tests/test_backend_consistency"
  grep -hE 'fp8 linear|FAIL|rror|PASSED|times 64' "$L/consistency.log" | head -24 | tee -a "$S"
  step "golden tests on cuda, fp8 weights" 90 golden_q8.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 "$B/tests/test_golden"
  grep -E '^golden|rror|> |Failure|PASSED|FAILED|graphs =' "$L/golden_q8.log" | head -14 | tee -a "$S"
  step "golden tests on cuda, fp8 weights, scales by a kernel" 90 golden_q8s.log env SS_FP8_OUTER=0 SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 "$B/tests/test_golden"
  grep -E '^golden|rror|> |Failure|PASSED|FAILED|graphs =' "$L/golden_q8s.log" | head -14 | tee -a "$S"
  step "golden tests on cuda" 90 golden.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  grep -E '^golden|rror|> |Failure|PASSED|FAILED|graphs =' "$L/golden.log" | head -12 | tee -a "$S"
  note "cuBLASLt $(python3 -c 'import ctypes; print(ctypes.CDLL("libcublasLt.so.13").cublasLtGetVersion())' 2>&1 | tail -1)"
  for cs in ${S20A_CASES:-1:128:128 8:128:64 16:128:64 64:1024:64 256:1024:64 1:2048:4}; do
    IFS=: read -r bsz pr gn <<<"$cs"
    for v in ${S20A_VARIANTS:-q8 q8s q8old bf16}; do
      bd=$B; [ $v = q8old ] && { [ -n "$OLDB" ] || continue; bd=$OLDB; }
      q=fp8; [ $v = bf16 ] && q=none
      step "8B b$bsz prompt $pr [$v]" 90 "bench_s20a_b${bsz}_p${pr}_$v.log" env SHARDSERVE_QUANTIZATION=$q SS_FP8_OUTER=$([ $v = q8s ] && echo 0 || echo 1) \
        "$bd/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt $pr --gen $gn --json
    done
  done
  grep -h "scaled by a separate kernel" "$L"/bench_s20a_*q8.log "$L"/golden_q8.log 2>/dev/null | head -2 | tee -a "$S"
  bench_lines "$L"/bench_s20a_*.log | tee -a "$S"
fi
if has wgp; then
  # Session 34: attn_wgmma.cu's prefill form. The attention cases of the consistency test (its forced wgmma cases among
  # them) under each WGP_CHECKS environment ("-": none); then bench_backend --attn-prefill (2,048-token chunks at 2k
  # to 128k, each prefill form) under each WGP_BENCH environment (set and empty: none); WGP_SAN="memcheck racecheck
  # synccheck": those compute-sanitizer tools over test_attention_tiled (WGP_SAN_ONLY: another pattern). End-to-end prefill: phase s21a after it, with S21A_VARIANTS
  # setting SS_ATTN_PREFILL (wg, mt2, wm8). WGP_ONLY: another SS_TEST_ONLY pattern of the consistency test. WGP_KV=fp8:
  # the benchmark reads an fp8 KV cache.
  export CUDA_VISIBLE_DEVICES=0
  for c in ${WGP_CHECKS:--}; do
    variant "$c"
    step "attention consistency [$c]" 150 "consistency_wgp_$vtag.log" env SS_TEST_ONLY="${WGP_ONLY:-test_attention*}" \
      ${ev[@]+"${ev[@]}"} "$B/tests/test_backend_consistency"
    grep -hE 'FAIL|rror|PASSED|wgmma' "$L/consistency_wgp_$vtag.log" | head -16 | tee -a "$S"
  done
  for c in ${WGP_BENCH--}; do # set and empty: no benchmark
    variant "$c"
    step "bench_backend --attn-prefill [$c]" 200 "attnp_$vtag.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_backend" \
      --attn-prefill --iters "${WGP_ITERS:-20}" ${WGP_KV:+--kv "$WGP_KV"}
    grep -h "attn" "$L/attnp_$vtag.log" | tee -a "$S"
  done
  for t in ${WGP_SAN:-}; do # compute-sanitizer tools (memcheck racecheck synccheck) over WGP_SAN_ONLY's tests
    step "$t (${WGP_SAN_ONLY:-test_attention_tiled})" 200 "wgp_$t.log" compute-sanitizer --tool "$t" --error-exitcode 9 \
      env SS_TEST_ONLY="${WGP_SAN_ONLY:-test_attention_tiled}" "$B/tests/test_backend_consistency"
    grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|PASSED|FAILED" "$L/wgp_$t.log" | head -5 | tee -a "$S"
  done
fi
if has s54; then
  # Session 54: attn_tiled.cu's loads by lane (a key's cache row found once a tile, a tile ahead, shuffled to the
  # copying lanes) against $OLDB: the attention alone with each cache (the sweep), the prefill forms with an fp8
  # cache (--attn-prefill), then 8B decode steps over S54_CASES ("B:PROMPT:GEN:KV") on both builds, interleaved,
  # S54_REPS rounds (0: none). S54_SWEEP=0: no attention-alone runs. S54_VARIANTS: cases_ab's ("new off": OFF_ENV).
  export CUDA_VISIBLE_DEVICES=0
  for kv in $([ "${S54_SWEEP:-1}" = 1 ] && echo bf16 fp8); do
    kf=(); [ $kv = fp8 ] && kf=(--kv fp8)
    attn_sweep "$kv" ${kf[@]+"${kf[@]}"}
    [ -x "$OLDB/tools/bench_backend" ] && SWEEP_BIN=$OLDB/tools/bench_backend attn_sweep "$kv-old" ${kf[@]+"${kf[@]}"}
  done
  for v in $([ "${S54_SWEEP:-1}" = 1 ] && echo new old); do
    bd=$B; [ $v = old ] && { [ -x "$OLDB/tools/bench_backend" ] || continue; bd=$OLDB; }
    step "attention prefill forms, fp8 cache [$v]" 200 "attnp_fp8_$v.log" "$bd/tools/bench_backend" --attn-prefill --kv fp8 --iters 20
    grep '^attn' "$L/attnp_fp8_$v.log" | sed "s/^/$v /" | tee -a "$S"
  done
  [ "${S54_REPS:-1}" -gt 0 ] && SKIP_CHECKS=1 cases_ab s54 "${S54_REPS:-1}" "${S54_CASES:-64:1024:64 128:1024:64 256:1024:64 \
128:128:64 64:1024:64:fp8 128:1024:64:fp8 256:1024:64:fp8 128:128:64:fp8}" "${S54_VARIANTS:-new old}"
fi
if has s55; then
  # Session 55: the fp8 dense form reading Q from shared memory, and its rule. The attention consistency cases and the
  # fp8-cache goldens (S55_CONS=0: neither), the fp8 per-form sweep (S55_SWEEP=0: none; its auto lines are the rule's
  # pick), then 8B decode steps with an fp8 cache on this build and $OLDB, interleaved, S55_REPS rounds over S55_CASES.
  export CUDA_VISIBLE_DEVICES=0
  if [ "${S55_CONS:-1}" = 1 ]; then
    step "consistency, attention cases" 150 consistency_s55.log env SS_TEST_ONLY='*attention*' "$B/tests/test_backend_consistency"
    grep -hE '^\[  (PASSED|FAILED)' "$L/consistency_s55.log" | tee -a "$S"
    step "golden tests on cuda, fp8 KV cache" 90 golden_fp8_s55.log env SS_TEST_DEVICE=cuda SS_TEST_KV=fp8 "$B/tests/test_golden"
    grep -hE '^\[  (PASSED|FAILED)' "$L/golden_fp8_s55.log" | tee -a "$S"
  fi
  [ "${S55_SWEEP:-1}" = 1 ] && step "attention per form and split count [fp8]" 120 attn_dense_fp8_s55.log \
    "$B/tools/bench_backend" --attn-dense --kv fp8 --iters 40
  [ "${S55_REPS:-1}" -gt 0 ] && SKIP_CHECKS=1 CASES_KV=fp8 cases_ab s55 "${S55_REPS:-1}" "${S55_CASES:-32:3000:64 \
64:3000:64 128:1024:64 192:1024:64 256:1024:64 48:1024:64}" "${S55_VARIANTS:-new old}"
fi
if has s21a; then
  # Session 21: batch-1 A/B runs on one H200 (the persistent kernel's GEMVs; its fp8 form under SS_PERSIST_FP8=1).
  # The decode cases of the consistency test under each S21A_CHECKS environment ("-" none; "A=1,B=2"); with
  # S21A_GOLDEN=1 the whole consistency test and the goldens (bf16, fp8 weights); how many fp8 unpacks read an
  # upper half in place (cuobjdump); then bench_decode over S21A_CASES for each of S21A_VARIANTS
  # ("tag:quantization:ENV=V,ENV=V"; a tag starting with "old" runs $OLDB), S21A_REPS rounds interleaved; then a
  # trace of one eager step under each S21A_TRACE variant (same syntax). S21A_TP=N: the goldens and bench_decode at
  # tp N on GPUs 0..N-1 (the consistency test stays on GPU 0). S21A_GENV="A=1 B=2": the goldens' environment.
  export CUDA_VISIBLE_DEVICES=0
  tpf=(); [ -n "${S21A_TP:-}" ] && tpf=(--tp "$S21A_TP") && CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((S21A_TP - 1)))
  # S21A_SHAPE: another gen_checkpoint shape for the benchmarks; S21A_LAYERS=N: only N of its layers
  SH=${S21A_SHAPE:-llama-3-8b}; MS=/tmp/$SH${S21A_LAYERS:+-l$S21A_LAYERS}
  [ -d "$MS" ] || "$B/tools/gen_checkpoint" --shape "$SH" ${S21A_LAYERS:+--layers "$S21A_LAYERS"} --out "$MS" >"$L/gen_$SH.log" 2>&1
  for c in ${S21A_CHECKS:--}; do # environment variants (as variant's; " ": none)
    variant "$c"
    step "decode_layers consistency [$c]" 120 "consistency_$vtag.log" env CUDA_VISIBLE_DEVICES=0 SS_TEST_ONLY=test_decode_layers \
      ${ev[@]+"${ev[@]}"} "$B/tests/test_backend_consistency"
    grep -hE 'FAIL|rror|PASSED' "$L/consistency_$vtag.log" | head -6 | tee -a "$S"
  done
  if [ -n "${S21A_GOLDEN:-}" ]; then # the whole consistency test and the goldens, bf16 and fp8 weights (2: the goldens only)
    if [ "$S21A_GOLDEN" != 2 ]; then
      step "backend consistency cpu vs cuda" 180 consistency.log env CUDA_VISIBLE_DEVICES=0 "$B/tests/test_backend_consistency"
      grep -hE 'FAIL|rror|PASSED' "$L/consistency.log" | head -8 | tee -a "$S"
    fi
    for q in none fp8; do
      step "golden tests on cuda${S21A_TP:+ tp $S21A_TP} [$q]" 120 "golden_$q.log" env SS_TEST_DEVICE=cuda SS_TEST_QUANT=$q \
        ${S21A_TP:+SS_TEST_TP=$S21A_TP} ${S21A_GENV:-} "$B/tests/test_golden"
      grep -E '^golden|rror|> |Failure|PASSED|FAILED' "$L/golden_$q.log" | head -12 | tee -a "$S"
    done
  fi
  if command -v cuobjdump >/dev/null && [ -z "${S21A_NOSASS:-}" ]; then # (S21A_NOSASS=1: skip this ~35 s count)
    cuobjdump -sass "$B/tools/bench_decode" 2>/dev/null | grep 'F2FP.F16.E4M3.UNPACK_B' >"$L/unpacks.sass"
    note "SASS: $(grep -c '\.H1' "$L/unpacks.sass") F2FP unpacks of an upper half, $(wc -l <"$L/unpacks.sass") in all"
  fi
  for rep in $(seq 1 "${S21A_REPS:-2}"); do
    for cs in ${S21A_CASES:-1:128:128}; do
      IFS=: read -r bsz pr gn <<<"$cs"
      for vs in ${S21A_VARIANTS:-op:fp8:SS_PERSIST_FP8=0 p8:fp8:SS_PERSIST_FP8=1 bf:none:}; do
        IFS=: read -r v q e <<<"$vs"
        bd=$B; case $v in old*) [ -n "$OLDB" ] || continue; bd=$OLDB ;; esac
        variant "${e:--}"
        step "${S21A_SHAPE:-8B} $q b$bsz prompt $pr [$v] #$rep" 90 "bench_s21a_b${bsz}_p${pr}_${v}_$rep.log" env SHARDSERVE_QUANTIZATION=$q ${ev[@]+"${ev[@]}"} \
          "$bd/tools/bench_decode" --model "$MS" --device cuda ${tpf[@]+"${tpf[@]}"} --batch $bsz --prompt $pr --gen $gn --json
      done
    done
  done
  bench_lines "$L"/bench_s21a_*.log | tee -a "$S"
  for vs in ${S21A_TRACE:-}; do # (a tag starting with "old" traces $OLDB's bench_decode; at S21A_TP every rank prints)
    IFS=: read -r v q e <<<"$vs"
    bd=$B; case $v in old*) [ -n "$OLDB" ] || continue; bd=$OLDB ;; esac
    variant "${e:--}"
    step "persistent trace [$v]" 90 "trace_s21a_$v.log" env SHARDSERVE_QUANTIZATION=$q ${ev[@]+"${ev[@]}"} SS_PERSIST_TRACE=100 \
      "$bd/tools/bench_decode" --model "$MS" --device cuda ${tpf[@]+"${tpf[@]}"} --prompt "${S21A_TPROMPT:-128}" --gen 128 --no-graphs --json
    grep -vE '^\{' "$L/trace_s21a_$v.log" | grep -A45 "persistent decode" | head -$((50 * ${S21A_TP:-1})) | tee -a "$S"
  done
fi
if has fp8ck; then
  # Session 31: fp8 checkpoints. test_fp8_checkpoint's logits checks on the GPU (SS_TEST_DEVICE=cuda); then a
  # Llama-3-70B shape written as an fp8 checkpoint (gen_checkpoint --fp8: e4m3 codes, an f32 scale a row) into
  # /dev/shm or /tmp, whichever has more room, with as many of its 80 layers as fit (FP8CK_LAYERS=N: at most N),
  # and batch 1 from it: --quantization auto (the persistent kernel's wide form) and op by op (SS_PERSIST_FP8=0)
  # (FP8CK_REPS rounds; 0: none); FP8CK_SERVE="C ...": then serve it, closed loop at those concurrencies;
  # FP8CK_TEST=0: no test.
  export CUDA_VISIBLE_DEVICES=0
  [ "${FP8CK_TEST:-1}" = 1 ] && step "fp8 checkpoint test on cuda" 120 fp8ck_test.log env SS_TEST_DEVICE=cuda "$B/tests/test_fp8_checkpoint"
  grep -hE "^\[ +(OK|FAILED|PASSED|ERROR)|checkpoint|scale|engine|rror" "$L/fp8ck_test.log" | grep -v "^20..-" | head -20 | tee -a "$S"
  df -B1 --output=target,avail /dev/shm /tmp 2>/dev/null | tee -a "$S" >"$L/df.log"
  read -r FD FA < <(tail -n +2 "$L/df.log" | sort -k2 -n | tail -1)
  NL=$(( (FA - 6000000000) / 856000000 )); [ "$NL" -gt "${FP8CK_LAYERS:-80}" ] && NL=${FP8CK_LAYERS:-80}
  if [ "$NL" -ge 1 ]; then
    MF=$FD/l70f8-$NL
    step "gen 70B fp8 checkpoint, $NL layers, in $FD" 200 gen_fp8ck.log "$B/tools/gen_checkpoint" --shape llama-3-70b --fp8 --layers "$NL" --out "$MF"
    tail -1 "$L/gen_fp8ck.log" | tee -a "$S"
    for rep in $(seq 1 "${FP8CK_REPS:-2}"); do
      for e in - SS_PERSIST_FP8=0; do
        variant "$e"
        step "70B fp8 checkpoint ($NL layers) b1 [$e] #$rep" 150 "bench_fp8ck_${vtag}_$rep.log" env ${ev[@]+"${ev[@]}"} \
          "$B/tools/bench_decode" --model "$MF" --device cuda --prompt 128 --gen 128 --json --verbose
        grep -h "fp8 checkpoint\|weights (" "$L/bench_fp8ck_${vtag}_$rep.log" | head -2 | cut -c1-220 | tee -a "$S"
      done
    done
    bench_lines "$L"/bench_fp8ck_*.log | tee -a "$S"
    if [ -n "${FP8CK_SERVE:-}" ]; then # FP8CK_SERVE="1 64": serve it, closed loop at those concurrencies, 128 / 256
      cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$MF/"
      # (session 32: FP8CK_STEPLOG=N serves with SS_STEP_LOG_MS=N; a round of each concurrency for each of FP8CK_SEEDS,
      # each with --requests-out into $OUTD; the steps' log is copied there too)
      env ${FP8CK_STEPLOG:+SS_STEP_LOG_MS=$FP8CK_STEPLOG} "$B/shardserve" serve --model "$MF" --device cuda --port 8000 \
        --metrics-port 8002 --served-model-name l70 >"$L/serve_fp8ck.log" 2>&1 &
      SPID=$!
      wait_ready $SPID
      grep -h "KV cache\|weights (" "$L/serve_fp8ck.log" | cut -c1-220 | tee -a "$S"
      if [ $ready = 1 ]; then
        for c in $FP8CK_SERVE; do
          for r in ${FP8CK_SEEDS:-1}; do # (a seed a round: a seed run before finds its prompts in the prefix cache)
            step "serve 70B fp8 ($NL layers) c$c 128/256 seed $r" 150 "bench_fp8ck_serve_c${c}_$r.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
              --model l70 --num-requests $((c * 3)) --concurrency "$c" --warmup "$c" --input-len 128 --output-len 256 --seed "$r" --json --quiet \
              --requests-out "$OUTD/requests_fp8ck_c${c}_$r.jsonl"
            grep -h '^{' "$L/bench_fp8ck_serve_c${c}_$r.log" | tail -1 | cut -c1-600 | tee -a "$S"
          done
        done
        python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics").read().decode())' \
          >"$OUTD/metrics_fp8ck.txt" 2>&1
        grep -h "step [0-9]*:" "$L/serve_fp8ck.log" >"$OUTD/steps_fp8ck.log"
      else
        note "FAIL  serve 70B fp8 not ready"
      fi
      kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    fi
    rm -rf "$MF"
  else
    note "fp8ck: no room for a layer of the 70B shape ($FD: $FA bytes)"
  fi
fi
if has f8eng; then
  # Session 32: an fp8 checkpoint through prepare on the GPU: an 8B shape written as an fbgemm_fp8 checkpoint
  # (gen_checkpoint --fp8) into /dev/shm, prepared into an engine (codes and a scale a row kept), then greedy tokens
  # from the checkpoint and from the engine (must be equal) and batch 1 from each (F8ENG_REPS rounds).
  export CUDA_VISIBLE_DEVICES=0
  FE=/dev/shm/s32; rm -rf "$FE"; mkdir -p "$FE"
  step "gen 8B fp8 checkpoint" 200 gen_f8eng.log "$B/tools/gen_checkpoint" --shape llama-3-8b --fp8 --out "$FE/l8f8"
  tail -1 "$L/gen_f8eng.log" | tee -a "$S"
  step "prepare it" 300 prep_f8eng.log "$B/shardserve" prepare --model "$FE/l8f8" --cache "$FE/cache"
  ENG=$(grep -ho "engine ready ([a-z]*): .*" "$L/prep_f8eng.log" | tail -1 | sed 's/^[^:]*: //')
  grep -h "build:\|engine ready" "$L/prep_f8eng.log" | cut -c1-220 | tee -a "$S"
  du -sb "$FE/l8f8" "$ENG" 2>/dev/null | tee -a "$S"
  for m in ck:"$FE/l8f8" eng:"$ENG"; do
    step "greedy from ${m%%:*}" 120 "gen_f8eng_${m%%:*}.log" "$B/shardserve" generate --model "${m#*:}" --device cuda \
      --prompt-ids 128000,791,6864,315,9822,374 --max-tokens 48 --ignore-eos --quiet
    grep -v "^20..-" "$L/gen_f8eng_${m%%:*}.log" | tail -1 | cut -c1-400 | tee -a "$S"
    grep -h "fp8\|weights (" "$L/gen_f8eng_${m%%:*}.log" | head -3 | cut -c1-220 | tee -a "$S"
  done
  if cmp -s <(grep -v "^20..-" "$L/gen_f8eng_ck.log") <(grep -v "^20..-" "$L/gen_f8eng_eng.log"); then note "PASS  greedy tokens: engine == checkpoint"
  else note "FAIL  greedy tokens: engine != checkpoint"; fi
  for rep in $(seq 1 "${F8ENG_REPS:-1}"); do
    for m in ck:"$FE/l8f8" eng:"$ENG"; do
      step "8B fp8 b1 from ${m%%:*} #$rep" 150 "bench_f8eng_${m%%:*}_$rep.log" "$B/tools/bench_decode" --model "${m#*:}" --device cuda \
        --prompt 128 --gen 128 --json
    done
  done
  bench_lines "$L"/bench_f8eng_*.log | tee -a "$S"
  rm -rf "$FE"
fi
if has longref; then
  # Session 32: long contexts against Hugging Face transformers. The 8B shape (random weights; its config: 131,072
  # positions, Llama 3.1's rope scaling) in /dev/shm; tools/long_logits prefills each of LONGREF_CASES
  # ("tag:prompt:ENV=V,..."; default a 512-token baseline, 8,192 and 32,760) in 2,048-token chunks and decodes its
  # last 8 tokens one step each, writing their logits; scripts/gpu/long_ref.py then runs each prompt through
  # transformers (bf16, sdpa) once and compares the last 8 positions' logits.
  export CUDA_VISIBLE_DEVICES=0
  LR=/dev/shm/longref; rm -rf "$LR"; mkdir -p "$LR"
  step "gen 8B checkpoint" 200 gen_longref.log "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$LR/l8"
  cases=()
  for c in ${LONGREF_CASES:-p512:512 p8k:8192 p32k:32760 p32k8:32760:SHARDSERVE_KV_CACHE_DTYPE=fp8}; do
    IFS=: read -r tag plen e <<<"$c"
    variant "${e:--}"
    step "long_logits $tag ($plen tokens) [${e:--}]" 150 "longref_$tag.log" env ${ev[@]+"${ev[@]}"} "$B/tools/long_logits" \
      --model "$LR/l8" --device cuda --prompt "$plen" --tail 8 --ids-out "$LR/$tag.ids" --logits-out "$LR/$tag.bin" \
      && cases+=("$tag:$LR/$tag.ids:$LR/$tag.bin")
    grep -h '^{' "$L/longref_$tag.log" | tee -a "$S"
  done
  [ ${#cases[@]} -gt 0 ] && step "transformers reference" 400 longref_hf.log python3 scripts/gpu/long_ref.py "$LR/l8" "${cases[@]}"
  grep -h '^{' "$L/longref_hf.log" | python3 -c '
import json, sys
for l in sys.stdin:
    j = json.loads(l)
    print("%-6s %6d tokens: rel L2 max %.4g, argmax same %d/%d, top-10 shared min %d; rows %s" % (j["case"], j["prompt"],
          j["rel_l2_max"], j["argmax_same"], j["tail"], j["top10_shared_min"], " ".join("%.3g" % r["rel_l2"] for r in j["rows"])))' | tee -a "$S"
  grep -v '^{' "$L/longref_hf.log" | tail -5 | tee -a "$S"
  rm -rf "$LR"
fi
if has s24p; then
  # Session 24: scripts/gpu/probe_cluster.cu (cluster occupancy, cooperative launches with clusters, a flag's round
  # trip through global memory and through distributed shared memory, idle and under a saturated bus).
  export CUDA_VISIBLE_DEVICES=0
  step "cluster probe build" 120 probe_build.log "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O3 -std=c++17 -arch=sm_90a -o "$W/probe_cluster" scripts/gpu/probe_cluster.cu
  step "cluster probe" 120 probe_cluster.log "$W/probe_cluster"
  tee -a "$S" <"$L/probe_cluster.log"
fi
if has s23m; then
  # Session 23: what the persistent kernel reads from DRAM in one eager batch-1 step (Nsight Compute metrics:
  # DRAM bytes read and written, L2 hit rate, duration), for each of S23M_VARIANTS (tag:quantization:ENV=V,...):
  # does the L2 prefetch read weights twice (prefetched lines evicted before their bulk load)? The weights of
  # the 8B shape are 13.96 GB a step in the kernel (32 layers x 436 MB). S23M_METRICS="m1,m2": that list instead
  # (session 24: sm__cycles_elapsed.avg.per_second, the SM clock while the kernel runs).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for vs in ${S23M_VARIANTS:-bf:none: a0:none:SS_PERSIST_L2AHEAD=0}; do
    IFS=: read -r v q e <<<"$vs"
    variant "${e:--}"
    for ms in ${S23M_METRICS:-} "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_lookup_hit.sum,lts__t_sectors_lookup_miss.sum" \
      "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct"; do
      step "ncu metrics persistent [$v]" 150 "ncu_s23m_$v.log" env SHARDSERVE_QUANTIZATION=$q ${ev[@]+"${ev[@]}"} ncu --clock-control none \
        --kernel-name regex:decode_persist --launch-skip "${S23M_SKIP:-20}" --launch-count 1 --metrics "$ms" --csv \
        "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 40 --no-graphs --json && break
    done
    grep -E 'dram__|gpu__time|lts__|sm__|gpc__' "$L/ncu_s23m_$v.log" | awk -F'","' -v v="$v" '{print v, $(NF-2), $(NF-1), $NF}' | tr -d '"' | tee -a "$S"
  done
fi
if has s21p; then
  # Session 21: Nsight Compute on one eager batch-1 step of the persistent kernel (launch S21P_SKIP), for each of
  # S21P_VARIANTS (tag:quantization:ENV=V,...): the warp-state section, and the SASS with its stall samples a line
  # (CSV, $OUT/k/sass_TAG.csv) to see where the consumer warps wait.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  note "ncu: $(command -v ncu || echo none) $(ncu --version 2>/dev/null | tail -1)"
  for vs in ${S21P_VARIANTS:-q8:fp8:SS_PERSIST_FP8=1 bf16:none:}; do
    IFS=: read -r v q e <<<"$vs"
    variant "${e:--}"
    step "ncu persistent [$v]" 200 "ncu_s21p_$v.log" env SHARDSERVE_QUANTIZATION=$q ${ev[@]+"${ev[@]}"} ncu --clock-control none \
      --kernel-name regex:decode_persist --launch-skip "${S21P_SKIP:-20}" --launch-count 1 --section WarpStateStats \
      --section SourceCounters --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats \
      --import-source no -f -o "$W/prof_$v" "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 40 --no-graphs --json
    ncu -i "$W/prof_$v.ncu-rep" --page details 2>&1 | grep -vE '^ *-+$' | tail -80 > "$L/ncu_details_$v.txt"
    grep -E 'Duration|Stall|stall|Issue|Eligible|Warp Cycles|Pipe|Executed Ipc' "$L/ncu_details_$v.txt" | head -30 | sed "s/^/$v /" | tee -a "$S"
    mkdir -p "$OUTD/k" && ncu -i "$W/prof_$v.ncu-rep" --page source --csv --print-source sass > "$OUTD/k/sass_$v.csv" 2>&1
    note "sass_$v.csv: $(wc -l < "$OUTD/k/sass_$v.csv") lines"
  done
fi
if has s20s; then
  # Session 20: serving S20S_N x 1000 in / 1000 out all at once with fp8 weights, this build (q8) against $OLDB
  # (q8old: session 19's scale a matrix), one H200.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in ${S20S_VARIANTS:-q8 q8old}; do
    bd=$B; [ $v = q8old ] && { [ -n "$OLDB" ] || continue; bd=$OLDB; }
    SHARDSERVE_QUANTIZATION=fp8 "$bd/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 \
      --served-model-name llama-3-8b --max-batch "${S20S_BATCH:-256}" --max-step-tokens 2048 --max-waiting 4096 >"$L/serve_s20_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    [ $ready = 1 ] && step "serve ${S20S_N:-500} x 1000/1000 [$v]" 150 "bench_s20s_$v.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model llama-3-8b --num-requests "${S20S_N:-500}" --input-len 1000 --output-len 1000 --seed 1 --json --quiet
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    echo "$v $(grep -ho '"output_tokens_per_s":[0-9.]*\|"duration_s":[0-9.]*' "$L/bench_s20s_$v.log" | tr '\n' ' ') tpot_p50 $(python3 -c 'import json,sys; print(round(json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])["tpot_ms"]["p50"], 2))' "$L/bench_s20s_$v.log" 2>/dev/null)" | tee -a "$S"
  done
fi
if has s20x; then
  # Session 20: a Llama-3-70B-shaped model cut to S20X_LAYERS of its 80 layers (the disk), on one H200: batch 1 and
  # 8 with fp8 weights (q8) and bf16 weights, to estimate the whole model on one card.
  export CUDA_VISIBLE_DEVICES=0
  MX=/tmp/llama-3-70b-l${S20X_LAYERS:-20}
  step "gen_checkpoint llama-3-70b, ${S20X_LAYERS:-20} layers" 120 gen70x.log "$B/tools/gen_checkpoint" --shape llama-3-70b --layers "${S20X_LAYERS:-20}" --out "$MX"
  for cs in ${S20X_CASES:-1:128:128 8:128:64}; do
    IFS=: read -r bsz pr gn <<<"$cs"
    for v in q8 bf16; do
      q=fp8; [ $v = bf16 ] && q=none
      step "70B/${S20X_LAYERS:-20} b$bsz prompt $pr [$v]" 90 "bench_s20x_b${bsz}_$v.log" env SHARDSERVE_QUANTIZATION=$q \
        "$B/tools/bench_decode" --model "$MX" --device cuda --batch $bsz --prompt $pr --gen $gn --json
    done
  done
  bench_lines "$L"/bench_s20x_*.log | tee -a "$S"
  grep -ho 'weights ([a-z0-9]* projections)\|[0-9.]* GiB weights[^,]*' "$L"/bench_s20x_*.log | sort -u | head -4 | tee -a "$S"
fi
if has s20m; then
  # Session 20: where cuBLASLt's outer-vector scales start to pay: prefill of S20M_PROMPTS tokens at batch 1 with
  # them from 512 rows on (the default) and never (SS_FP8_OUTER_MIN=1000000: unscaled GEMM + scaling pass).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for rep in 1 2; do
    for pr in ${S20M_PROMPTS:-512 1024 2048}; do
      for v in outer pass; do
        om=512; [ $v = pass ] && om=1000000
        step "8B prefill $pr [$v] #$rep" 60 "bench_s20m_p${pr}_${v}_$rep.log" env SHARDSERVE_QUANTIZATION=fp8 SS_FP8_OUTER_MIN=$om \
          "$B/tools/bench_decode" --model "$M8" --device cuda --batch 1 --prompt $pr --gen 4 --json
      done
    done
  done
  bench_lines "$L"/bench_s20m_*.log | tee -a "$S"
fi
if has s20p; then
  # Session 20: held-out perplexity of the bundled demo model (a trained model, unlike the fixtures) on one H200:
  # bf16 weights, fp8 weights (this build: a scale a row and a token), fp8 weights in $OLDB (session 19: a scale a
  # matrix and a call), the fp8 KV cache, both. tools/eval_ppl over the corpus's valid.txt (packed by
  # stage-lead.sh); PyTorch float32 gave 35.2141 (golden.json).
  # S20P_TP=2: at tp 2 on GPUs 0 and 1
  export CUDA_VISIBLE_DEVICES=0${S20P_TP:+,1}
  [ -f .gpu-carry/corpus.tar.xz ] && [ ! -d "$W/.corpus" ] && tar -C "$W" -xJf .gpu-carry/corpus.tar.xz
  for v in ${S20P_VARIANTS:-none q8 q8old kv8 q8kv8}; do
    bd=$B; [ $v = q8old ] && { [ -x "${OLDB:-/nonexistent}/tools/eval_ppl" ] || continue; bd=$OLDB; }
    q=none; case $v in q8*) q=fp8 ;; esac
    kv=auto; case $v in *kv8) kv=fp8 ;; esac
    step "eval_ppl demo [$v]" 120 "ppl_$v.log" "$bd/tools/eval_ppl" --model models/shardserve-demo --text "$W/.corpus/valid.txt" \
      --device cuda --quantization $q --kv-cache-dtype $kv ${S20P_TP:+--tp $S20P_TP} --json
    echo "$v $(grep -h '^{' "$L/ppl_$v.log" | tail -1)" | tee -a "$S"
  done
fi
if has s20t; then
  # Session 20, 2 GPUs: the goldens at tp 2 with fp8 weights (a scale a row, a scale a token), then bench_decode
  # at tp 2: q8 (this build), q8old ($OLDB), bf16.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "golden tests on cuda tp 2, fp8 weights" 120 golden_q8_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 SS_TEST_TP=2 "$B/tests/test_golden"
  grep -E '^golden|ERROR|Failure|!=|PASSED|FAILED' "$L/golden_q8_tp2.log" | head -12 | tee -a "$S"
  for cs in ${S20T_CASES:-1:128:128 8:128:64 64:1024:64 256:1024:64}; do
    IFS=: read -r bsz pr gn <<<"$cs"
    for v in ${S20T_VARIANTS:-q8 q8old bf16}; do
      bd=$B; [ $v = q8old ] && { [ -n "$OLDB" ] || continue; bd=$OLDB; }
      q=fp8; [ $v = bf16 ] && q=none
      step "8B tp2 b$bsz prompt $pr [$v]" 90 "bench_s20t_b${bsz}_p${pr}_$v.log" env SHARDSERVE_QUANTIZATION=$q \
        "$bd/tools/bench_decode" --model "$M8" --device cuda --tp 2 --batch $bsz --prompt $pr --gen $gn --json
    done
  done
  bench_lines "$L"/bench_s20t_*.log | tee -a "$S"
fi
if has s19a; then
  # Session 19, call 1: fp8 projection weights (--quantization fp8). The goldens with fp8 weights, then (after the
  # consistency test with its fp8 linear cases and the bf16 goldens) bench_decode with bf16 weights (new) and fp8
  # weights (off: the flag's environment twin), then batches 1-16 with fp8 weights and no W8A16 GEMV
  # (SS_FP8_GEMV_MAX=0: cuBLASLt's fp8 GEMM over e4m3 activations) and with the GEMV up to 16 rows' worth (the default 8).
  export CUDA_VISIBLE_DEVICES=0
  step "golden tests on cuda, fp8 weights" 90 golden_q8.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 "$B/tests/test_golden"
  grep -E '^golden|error|> |Failure' "$L/golden_q8.log" | head -12 | tee -a "$S"
  OFF_ENV="SHARDSERVE_QUANTIZATION=fp8" cases_ab s19a "${S19A_REPS:-1}" \
    "${S19A_CASES:-1:128:128 2:128:64 4:128:64 8:128:64 16:128:64 64:1024:64 256:1024:64 1:2048:4}" "new off"
  for cs in ${S19A_LT_CASES:-2:128:64 4:128:64 8:128:64}; do
    IFS=: read -r bsz pr gn <<<"$cs"
    step "8B b$bsz prompt $pr [fp8, cuBLASLt only]" 90 "bench_s19lt_b${bsz}_p${pr}.log" env SHARDSERVE_QUANTIZATION=fp8 SS_FP8_GEMV_MAX=0 \
      "$B/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt $pr --gen $gn --json
  done
  bench_lines "$L"/bench_s19lt_*.log | tee -a "$S"
  grep '^golden' "$L/golden.log" | tee -a "$S"
  grep -h 'fp8 linear\|FAIL\|PASSED\|SKIPPED' "$L/consistency.log" | head -20 | tee -a "$S"
fi
if has s19b; then
  # Session 19, call 3: the goldens with fp8 weights; batch 1 with fp8 weights under each tensor-core GEMV variant
  # (SS_GEMV_VARIANT; the fp8 GEMV has mma forms only); serving S19B_N x 1000 in / 1000 out all at once with bf16
  # weights (none), fp8 weights (q8), and fp8 weights and KV cache (q8kv8).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "golden tests on cuda, fp8 weights" 90 golden_q8.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 "$B/tests/test_golden"
  grep -E '^golden|error|> |Failure' "$L/golden_q8.log" | head -12 | tee -a "$S"
  for gv in ${S19B_GV:-mma-auto-pdl mma-w8u4-pdl mma-w16u4-pdl mma-w8u8-pdl mma-w4u8-pdl}; do
    step "8B b1 fp8 [$gv]" 60 "bench_s19b_gv_$gv.log" env SHARDSERVE_QUANTIZATION=fp8 SS_GEMV_VARIANT=$gv \
      "$B/tools/bench_decode" --model "$M8" --device cuda --batch 1 --prompt 128 --gen 128 --json
  done
  bench_lines "$L"/bench_s19b_gv_*.log | tee -a "$S"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in ${S19B_VARIANTS:-none q8 q8kv8}; do
    en=(SHARDSERVE_QUANTIZATION=none); [ $v != none ] && en=(SHARDSERVE_QUANTIZATION=fp8)
    [ $v = q8kv8 ] && en+=(SHARDSERVE_KV_CACHE_DTYPE=fp8)
    env "${en[@]}" "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 \
      --served-model-name llama-3-8b --max-batch "${S19B_BATCH:-256}" --max-step-tokens 2048 --max-waiting 4096 >"$L/serve_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    [ $ready = 1 ] && step "serve ${S19B_N:-500} x 1000/1000 [$v]" 150 "bench_s19b_$v.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model llama-3-8b --num-requests "${S19B_N:-500}" --input-len 1000 --output-len 1000 --seed 1 --json --quiet
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    echo "$v $(grep -ho '"output_tokens_per_s":[0-9.]*\|"duration_s":[0-9.]*' "$L/bench_s19b_$v.log" | tr '\n' ' ') tpot_p50 $(python3 -c 'import json,sys; print(round(json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])["tpot_ms"]["p50"], 2))' "$L/bench_s19b_$v.log" 2>/dev/null) $(grep -o 'KV cache: [^)]*)' "$L/serve_$v.log" | head -1) $(grep -o '[0-9.]* MiB weights ([a-z0-9]* projections)' "$L/serve_$v.log" | head -1)" | tee -a "$S"
  done
fi
if has s19c; then
  # Session 19, call 4: fp8 weights in the persistent batch-1 kernel. The consistency test (its decode_layers cases
  # with fp8 weights) and the goldens with fp8 weights, then S19C_REPS interleaved rounds of batch 1 (and 8, the
  # GEMV's 8-warp default) with bf16 weights (bf16), fp8 weights (q8: the persistent kernel) and fp8 weights op by
  # op (q8op: SS_PERSIST=0).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "backend consistency cpu vs cuda" 150 consistency.log "$B/tests/test_backend_consistency"
  grep -hE 'fp8 weights|FAIL|error|PASSED' "$L/consistency.log" | head -24 | tee -a "$S"
  step "golden tests on cuda, fp8 weights" 90 golden_q8.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 "$B/tests/test_golden"
  grep -E '^golden|error|> |Failure' "$L/golden_q8.log" | head -12 | tee -a "$S"
  step "golden tests on cuda" 90 golden.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  grep -E '^golden|error|> |Failure' "$L/golden.log" | head -8 | tee -a "$S"
  for rep in $(seq 1 "${S19C_REPS:-2}"); do
    for cs in ${S19C_CASES:-1:128:128 1:512:128 8:128:64}; do
      IFS=: read -r bsz pr gn <<<"$cs"
      for v in bf16 q8 q8op; do
        en=(SHARDSERVE_QUANTIZATION=none); [ $v != bf16 ] && en=(SHARDSERVE_QUANTIZATION=fp8)
        [ $v = q8op ] && en+=(SS_PERSIST=0)
        step "8B b$bsz prompt $pr [$v] #$rep" 60 "bench_s19c_b${bsz}_p${pr}_${v}_$rep.log" env "${en[@]}" \
          "$B/tools/bench_decode" --model "$M8" --device cuda --batch $bsz --prompt $pr --gen $gn --json
      done
    done
  done
  bench_lines "$L"/bench_s19c_*.log | tee -a "$S"
fi
if has s19g; then
  # Session 19, call 7: the goldens at tp 2 with fp8 weights again (the token comparison's margin now follows the
  # logits' error).
  export CUDA_VISIBLE_DEVICES=0,1
  step "golden tests on cuda tp 2, fp8 weights" 120 golden_q8_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 SS_TEST_TP=2 "$B/tests/test_golden"
  grep -E '^golden|ERROR|Failure|!=' "$L/golden_q8_tp2.log" | head -12 | tee -a "$S"
fi
if has s19t; then
  # Session 19, call 5: fp8 weights at tp 2 (2 GPUs): the consistency test on GPU 0 (the persistent kernel's fp8 form
  # then behind SS_PERSIST_FP8=1; the default at tp 1 since session 29), the goldens at tp 2 with fp8 weights, and bench_decode bf16 against fp8 weights.
  step "backend consistency cpu vs cuda" 240 consistency.log env CUDA_VISIBLE_DEVICES=0 "$B/tests/test_backend_consistency"
  grep -hE 'fp8 weights|FAIL|error|PASSED' "$L/consistency.log" | head -24 | tee -a "$S"
  export CUDA_VISIBLE_DEVICES=0,1
  step "golden tests on cuda tp 2, fp8 weights" 120 golden_q8_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_QUANT=fp8 SS_TEST_TP=2 "$B/tests/test_golden"
  grep '^golden' "$L/golden_q8_tp2.log" | tee -a "$S"
  OFF_ENV="SHARDSERVE_QUANTIZATION=fp8" CASES_TP=2 SKIP_CHECKS=1 cases_ab s19t 1 "${S19T_CASES:-1:128:128 8:128:64 64:1024:64 256:1024:64}" "new off"
fi
if has s18a; then
  # Session 18, call 1: the fp8 KV cache. The goldens with an fp8 cache, the attention sweep with both caches,
  # then (after the consistency test with its fp8 cases and the bf16 goldens) bench_decode with a bf16 cache
  # (new), an fp8 cache (off: the flag's environment twin) and $OLDB (session 17's build, bf16).
  export CUDA_VISIBLE_DEVICES=0
  step "golden tests on cuda, fp8 KV cache" 90 golden_fp8.log env SS_TEST_DEVICE=cuda SS_TEST_KV=fp8 "$B/tests/test_golden"
  grep '^golden' "$L/golden_fp8.log" | tee -a "$S"
  attn_sweep bf16
  attn_sweep fp8 --kv fp8
  OFF_ENV="SHARDSERVE_KV_CACHE_DTYPE=fp8" cases_ab s18a "${S18A_REPS:-1}" \
    "${S18A_CASES:-64:1024:64 128:1024:64 256:1024:64 32:4096:64 1:128:128 1:2048:4}" "new off old"
  grep '^golden' "$L/golden.log" | tee -a "$S"
fi
if has s17a; then
  # Session 17, call 1: where the tensor-core decode attention's time goes at short contexts (the sweep; call 1's
  # version timed decode at both grid orders too), then bench_decode with the kv heads of a row block adjacent
  # in the grid (new), the old order in the same binary (off) and $OLDB.
  attn_sweep
  OFF_ENV="SS_ATTN_ORDER=heads_outer" cases_ab s17a 2 "${S17A_CASES:-128:128:64 64:1024:64 1:2048:4}" "new off old"
fi
if has s17c; then
  # Session 17, calls 2-3: the 32-key decode form (SS_ATTN_SHORT=0 is off). Call 2 ran its first policy (the
  # 32-key form whenever the CTAs exceed a wave) with S17C_CASES="128:128:64 256:128:64 64:1024:64 32:128:64";
  # call 3 the landed one.
  attn_sweep
  OFF_ENV="SS_ATTN_SHORT=0" cases_ab s17c 3 "${S17C_CASES:-64:128:64 64:512:64}" "new off old"
fi
if has s17d; then
  # Session 17, call 4: the same at tp 2 (4 kv heads a rank: batch 128 is 512 CTAs, the 32-key form's case).
  OFF_ENV="SS_ATTN_SHORT=0" CASES_TP=2 SKIP_CHECKS=1 cases_ab s17d 2 "${S17D_CASES:-128:128:64 64:128:64 256:128:64}" "new off old"
fi
if has s17e; then
  # Session 17, call 6: serving on one H200, this build against $OLDB and against its old grid order (mixed
  # prefill + decode steps launch every tile in the prefill shape, so they now take the heads-inner order).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in new old outer; do
    bd=$B; [ $v = old ] && bd=$OLDB; en=(); [ $v = outer ] && en=(SS_ATTN_ORDER=heads_outer)
    env ${en[@]+"${en[@]}"} "$bd/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
      --max-batch 256 --max-step-tokens 2048 --max-waiting 2048 >"$L/serve_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    [ $ready = 1 ] && step "serve ${S17E_N:-500} x 1000/1000 [$v]" 150 "bench_s17e_$v.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model llama-3-8b --num-requests "${S17E_N:-500}" --input-len 1000 --output-len 1000 --seed 1 --json --quiet
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    echo "$v $(grep -ho '"output_tokens_per_s":[0-9.]*\|"duration_s":[0-9.]*' "$L/bench_s17e_$v.log" | tr '\n' ' ')" | tee -a "$S"
  done
fi
if has sanattn; then
  # Session 17: memcheck and racecheck over the attention tests alone (the 32-key decode form forced, key
  # splits, block size 7; cp.async into shared memory, no bulk copies, so any hazard fails)
  export CUDA_VISIBLE_DEVICES=0
  step "memcheck (consistency: attention)" 240 memcheck_attn.log compute-sanitizer --tool memcheck --error-exitcode 9 \
    env SS_TEST_ONLY="test_attention*" "$B/tests/test_backend_consistency"
  step "racecheck (consistency: attention)" 240 racecheck_attn.log compute-sanitizer --tool racecheck --error-exitcode 9 \
    env SS_TEST_ONLY="test_attention*" "$B/tests/test_backend_consistency"
  grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$L/memcheck_attn.log" "$L/racecheck_attn.log" | tee -a "$S"
fi
if has checks1; then
  # The consistency test and the goldens on GPU 0 alone (a change that only a test case covers)
  checks_tp1
fi
if has tp1ab; then
  # Session 14: one GPU after the tp > 1 overlap changes (precise read-back joins, dev_tok on every rank):
  # the goldens, memcheck, and batch 1 / 8 against the build before ($OLDB).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "golden tests on cuda" 90 golden.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  step "compute-sanitizer memcheck (golden, cuda)" 150 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 9 env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  for rep in 1 2; do
    for v in new ${OLDB:+old}; do
      bd=$B; [ $v = old ] && bd=$OLDB
      step "8B tp1 b1 [$v] #$rep" 60 "bench_tp1ab_b1_${v}_$rep.log" "$bd/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
      step "8B tp1 b8 [$v] #$rep" 60 "bench_tp1ab_b8_${v}_$rep.log" "$bd/tools/bench_decode" --model "$M8" --device cuda --batch 8 --prompt 128 --gen 128 --json
    done
  done
fi
if has samp && [ "$NG" -ge 2 ]; then
  # Session 14: sampled steps at tp 2 choose their tokens on every rank. Each rank's own tokens, fed to the
  # step submitted ahead, must equal the leader's (test_sharded on cuda); then serving with temperature 0.8.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "sampled tokens at tp 2, ahead = collected first (cuda)" 120 sharded_cuda.log env SS_TEST_DEVICE=cuda "$B/tests/test_sharded"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in overlap nooverlap; do
    fl=(); [ $v = nooverlap ] && fl=(--overlap off)
    "$B/shardserve" serve --model "$M8" --device cuda --tp 2 --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
      ${fl[@]+"${fl[@]}"} >"$L/serve_samp_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    if [ $ready = 1 ]; then
      for c in 1 8; do
        step "serve tp2 c$c T=0.8 [$v]" 90 "bench_samp_c${c}_$v.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
          --model llama-3-8b --num-requests $((c * 4)) --concurrency "$c" --warmup "$c" --input-len 128 --output-len 256 \
          --temperature 0.8 --seed 1 --json --quiet
      done
      python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics", timeout=5).read().decode())' 2>/dev/null \
        | grep -E "^shardserve_steps_planned_ahead_total|^shardserve_generation_tokens_total" | sed 's/^/      /' | tee -a "$S"
    else
      note "FAIL  serve tp2 [$v] not ready"
    fi
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null; pkill -9 -f "shardserve worker" 2>/dev/null
  done
  for f in "$L"/bench_samp_*.log; do
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{"):
        d=json.loads(l); print(sys.argv[1].split("/")[-1], d["requests"]["ok"], d["requests"]["failed"], round(d["throughput"]["output_tokens_per_s"],1), round(d["tpot_ms"]["p50"],3))' "$f" | tee -a "$S"
  done
fi
if has fin2 && [ "$NG" -ge 2 ]; then
  # Session 14's last check at tp 2 after the review fixes: goldens, the soak, kill -9, batch 1 with and
  # without overlap, and the sampled tp 2 test.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "golden tp2" 90 golden_tp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 "$B/tests/test_golden"
  step "sampled tokens at tp 2 (cuda)" 120 sharded_cuda.log env SS_TEST_DEVICE=cuda "$B/tests/test_sharded"
  step "serving soak on cuda tp 2" 120 soak_tp2.log env SOAK_SERVER_ARGS="--device cuda --tp 2" \
    python3 tests/serve/soak.py "$B/shardserve" /work/shared/fixtures 3000 45
  grep -h "^soak:\|FAIL" "$L/soak_tp2.log" | tee -a "$S"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  kill_worker_test
  for v in new nooverlap new; do
    fl=(); [ $v = nooverlap ] && fl=(--no-overlap)
    step "8B tp2 b1 [$v]" 60 "bench_fin2_${v}.log" "$B/tools/bench_decode" --model "$M8" --device cuda --tp 2 --prompt 128 --gen 256 --json ${fl[@]+"${fl[@]}"}
  done
fi
if has x70 && [ "$NG" -ge 4 ]; then
  # Session 13: the Llama-3-70B shape at tp 4 (goal 75 tok/s batch 1, roofline ~86 on H100s). Its checkpoint
  # (~141 GB) is written in the background while the 4-GPU goldens run; then batch 1 under the peer
  # all-reduce and NCCL's, and one batched run.
  export CUDA_VISIBLE_DEVICES=0,1,2,3
  gen70_start
  step "golden tp4 (peer all-reduce by content)" 90 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
  step "golden tp2 x pp2" 90 golden_tp2pp2.log env SS_TEST_DEVICE=cuda SS_TEST_TP=2 SS_TEST_PP=2 "$B/tests/test_golden"
  if gen70_wait; then
    for e in ${X70_ENVS:-- SS_PEER_ALLREDUCE=0 -}; do
      variant "$e"
      step "70B tp4 b1 [$e]" 200 "bench_x70_tp4_$vtag.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M70" --device cuda --tp 4 --prompt 128 --gen 256 --json
    done
    step "70B tp4 b16" 200 bench_x70_tp4_b16.log "$B/tools/bench_decode" --model "$M70" --device cuda --tp 4 --batch 16 --prompt 128 --gen 64 --json
  fi
fi
if has next; then
  # For the next lease of four GPUs (nvidia-h200-x4): the 4-GPU goldens and 8B at tp 4 with the code of
  # sessions 4-5 (session 3: 460.7 tok/s; goal 520), then run x4 for the 70B shape.
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  step "8B tp1 b1" 60 bench_next_b1.log env CUDA_VISIBLE_DEVICES=0 "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 256 --json
  if [ "$NG" -ge 4 ]; then
    export CUDA_VISIBLE_DEVICES=0,1,2,3
    step "golden tp4" 150 golden_tp4.log env SS_TEST_DEVICE=cuda SS_TEST_TP=4 "$B/tests/test_golden"
    step "8B tp4 b1" 120 bench_next_tp4.log "$B/tools/bench_decode" --model "$M8" --device cuda --tp 4 --prompt 128 --gen 256 --json
  fi
fi
if has abtp && [ "$NG" -ge 2 ]; then
  # An A/B at tp ABTP_TP (default 2) on one host, environment variants interleaved (ABTP_ENVS, as AB_ENVS),
  # ABTP_REPS rounds over ABTP_BATCHES; the peer all-reduce tests and the goldens at that tp under each first.
  T=${ABTP_TP:-2}
  export CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((T - 1)))
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for e in ${ABTP_ENVS:--}; do
    variant "$e"
    step "peer all-reduce tests [$e]" 120 "abtp_comm_$vtag.log" env ${ev[@]+"${ev[@]}"} CUDA_VISIBLE_DEVICES=0,1 "$B/tests/test_comm_peer"
    step "golden tp$T [$e]" 150 "abtp_golden_$vtag.log" env ${ev[@]+"${ev[@]}"} SS_TEST_DEVICE=cuda SS_TEST_TP=$T "$B/tests/test_golden"
  done
  for rep in $(seq 1 "${ABTP_REPS:-2}"); do
    for bsz in ${ABTP_BATCHES:-1 8 64}; do
      g=64; [ "$bsz" = 1 ] && g=256
      for e in ${ABTP_ENVS:--}; do
        variant "$e"
        step "8B tp$T b$bsz [$e] #$rep" 60 "bench_abtp_b${bsz}_${vtag}_$rep.log" \
          env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --tp $T --prompt 128 --gen $g --batch $bsz --json
      done
    done
  done
fi
if has cases; then
  # CASES: ";"-separated "batch prompt variant" decode benchmarks at tp 1 (variant as AB_ENVS), 64 new
  # tokens, CASES_REPS rounds, in the order given; the checks under CASES_CHECK_ENVS first.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for e in ${CASES_CHECK_ENVS:-}; do
    variant "$e"
    step "consistency + goldens on cuda [$e]" 200 "cases_checks_$vtag.log" \
      bash -c 'env "$@" "$0/tests/test_backend_consistency" && env "$@" SS_TEST_DEVICE=cuda "$0/tests/test_golden"' "$B" ${ev[@]+"${ev[@]}"}
  done
  for rep in $(seq 1 "${CASES_REPS:-1}"); do
    IFS=';' read -ra cs <<<"${CASES:-}"
    for c in "${cs[@]}"; do
      read -r bsz P e <<<"$c"
      variant "${e:--}"
      step "8B b$bsz prompt $P [${e:--}] #$rep" 150 "bench_case_b${bsz}_p${P}_${vtag}_$rep.log" \
        env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" --device cuda --prompt "$P" --gen 64 --batch "$bsz" --json
    done
  done
fi
if has s6 || has ab; then
  # One GPU (session 5): the checks, then decode at batch 1 (twice), 8, 32, 128 (AB_BATCHES) and, for s6, a
  # 2048-token prefill. With .gpu-carry/base_bench_decode (the same tool built from the commit before a
  # change, packed by hand) every decode also runs on it, interleaved: an A/B in one call.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || ("$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1; echo "rc=$?" >>"$L/gen8b.log") &
  G8=$!
  step "backend consistency cpu vs cuda" 150 consistency.log "$B/tests/test_backend_consistency"
  step "golden tests on cuda" 150 golden_cuda.log env SS_TEST_DEVICE=cuda "$B/tests/test_golden"
  wait "$G8"
  # AB_ENVS: space-separated environment variants of the new binary ("-" none; "A=1,B=2" two settings).
  variants=new; [ -x "$ROOT/.gpu-carry/base_bench_decode" ] && variants="new base"
  for bsz in ${AB_BATCHES:-1 1 8 32 128}; do
    g=64; [ "$bsz" = 1 ] && g=256
    for v in $variants; do
      for e in ${AB_ENVS:--}; do
        [ $v = base ] && [ "$e" != - ] && continue
        variant "$e"
        bin=$B/tools/bench_decode; [ $v = base ] && bin=$ROOT/.gpu-carry/base_bench_decode
        step "8B tp1 b$bsz [$v $e]" 60 "bench_ab_b${bsz}_${v}_${vtag}_$SECONDS.log" \
          env ${ev[@]+"${ev[@]}"} "$bin" --model "$M8" --device cuda --prompt 128 --gen $g --batch $bsz --json
      done
    done
  done
  has s6 && step "prefill 8B 2048 tokens" 60 bench_s6_prefill.log "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 2048 --gen 4 --json
fi
if has trace; then
  # The persistent decode kernel's timeline (session 9): one eager step (no graphs) of batch 1 traced through
  # SS_PERSIST_TRACE (launch TRACE_CALL, default 100), under each TRACE_ENVS variant (as AB_ENVS).
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,clocks_throttle_reasons.active --format=csv -lms 200 >"$L/trace_clocks.csv" 2>&1 &
  SMI=$!
  for e in ${TRACE_ENVS:--}; do
    variant "$e"
    step "persistent decode trace [$e]" 90 "trace_$vtag.log" env ${ev[@]+"${ev[@]}"} SS_PERSIST_TRACE="${TRACE_CALL:-100}" \
      "$B/tools/bench_decode" --model "$M8" --device cuda --prompt 128 --gen 160 --json --no-graphs
    sed -n '/persistent decode, tp rank 0/,/last head by/p' "$L/trace_$vtag.log" | tee -a "$S"
  done
  kill "$SMI" 2>/dev/null
  note "clocks during the traces (sm, mem, power, throttle; every 10th sample): $(awk 'NR > 1 && NR % 10 == 0' "$L/trace_clocks.csv" | tr '\n' ';')"
fi
if has long; then
  # Long contexts on one GPU (session 7): decode after prompts of LONG_PROMPTS tokens (default 512 2048 8000;
  # the 8B shape's context is 8192) at batch 1 and 8, 64 new tokens; the prefill rate is the long-prompt TTFT.
  # LONG_TP (default 1): the decode benchmarks at that tensor-parallel degree, on GPUs 0..LONG_TP-1.
  LTP=${LONG_TP:-1}
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  [ "$LTP" = 1 ] && for e in ${LONG_CHECK_ENVS:-${LONG_ENVS:--}}; do # the checks under each variant first
    variant "$e"
    step "consistency + goldens on cuda [$e]" 200 "long_checks_$vtag.log" \
      bash -c 'env "$@" "$0/tests/test_backend_consistency" && env "$@" SS_TEST_DEVICE=cuda "$0/tests/test_golden"' "$B" ${ev[@]+"${ev[@]}"}
  done
  for P in ${LONG_PROMPTS:-512 2048 8000}; do
    for bsz in ${LONG_BATCHES:-1 8}; do
      for e in ${LONG_ENVS:--}; do # environment variants as AB_ENVS
        variant "$e"
        step "8B tp$LTP b$bsz prompt $P [$e]" 150 "bench_long_tp${LTP}_b${bsz}_p${P}_$vtag.log" \
          env ${ev[@]+"${ev[@]}"} CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((LTP - 1))) "$B/tools/bench_decode" --model "$M8" \
          --device cuda --tp "$LTP" --prompt "$P" --gen 64 --batch $bsz --json
      done
    done
  done
fi
if has profile; then
  # Kernel timelines of decode at batch 1 (tp 1, tp 2 and, with 4 GPUs, tp 4) through tools/ktrace (CUPTI;
  # these machines have no Nsight Systems), summarised per step by scripts/gpu/ktrace_summary.py.
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for tp in 1 2 4; do
    [ "$tp" -le "$NG" ] || continue
    devs=$(seq -s, 0 $((tp - 1)))
    for bsz in ${PROFILE_BATCHES:-1}; do
      # PROFILE_ENVS: environment variants as AB_ENVS ("-" none), one timeline each
      for e in ${PROFILE_ENVS:--}; do
        variant "$e"
        tag=tp${tp}_b$bsz; [ "$e" != - ] && tag=${tag}_$vtag
        rm -f "$W/kt_$tag".*
        step "ktrace decode 8B tp$tp batch $bsz [$e]" 150 "ktrace_$tag.log" env ${ev[@]+"${ev[@]}"} CUDA_VISIBLE_DEVICES=$devs CUDA_INJECTION64_PATH="$B/tools/libss_ktrace.so" \
          SS_KTRACE_OUT="$W/kt_$tag" "$B/tools/bench_decode" --model "$M8" --device cuda --tp $tp --batch $bsz --prompt 128 --gen 64 --json
        python3 scripts/gpu/ktrace_summary.py --steps 32 "$W/kt_$tag".* >"$OUTD/ktrace_$tag.txt" 2>&1
        sed -n '/one layer/,$p' "$OUTD/ktrace_$tag.txt"
      done
    done
  done
fi
if has servebisect && [ "$NG" -ge 2 ]; then
  # tp 2 serving failed in session 3 (a step error right after ready, then a hang in ncclCommAbort):
  # the same short load with each new piece switched off in turn, to find the culprit.
  export CUDA_VISIBLE_DEVICES=0,1
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in "" SS_NO_GRAPHS=1 SS_PEER_ALLREDUCE=0 SS_UNFUSED_ROPE=1 "SS_NO_GRAPHS=1 SS_PEER_ALLREDUCE=0"; do
    tag=$(echo "${v:-default}" | tr ' =' '__')
    env $v "$B/shardserve" serve --model "$M8" --device cuda --tp 2 --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
      --max-batch 64 --max-step-tokens 2048 >"$L/serve_$tag.log" 2>&1 &
    SPID=$!
    for i in $(seq 1 120); do
      python3 -c 'import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2).status == 200 else 1)' 2>/dev/null && break
      kill -0 $SPID 2>/dev/null || break; sleep 0.5
    done
    step "serve tp2 [$tag]: 8 requests 467/64" 40 "bench_serve_$tag.log" "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b \
      --num-requests 8 --input-len 467 --output-len 64 --request-rate 4 --seed 1 --json
    grep -E " error | warn " "$L/serve_$tag.log" | head -5 | sed 's/^/      /' | tee -a "$S"
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null; pkill -9 -f "shardserve worker" 2>/dev/null
  done
fi
if has serve; then
  # SERVE_TP=2: the same benchmarks against a tp 2 replica on GPUs 0 and 1; SERVE_OLD=1: served by $OLDB's binary;
  # SERVE_ARGS: more serve flags (e.g. --no-pace)
  export CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((${SERVE_TP:-1} - 1)))
  SBIN=$B/shardserve; [ -n "${SERVE_OLD:-}" ] && [ -n "$OLDB" ] && SBIN=$OLDB/shardserve && note "serving with the old build"
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  # the real Llama 3.1 tokenizer (vocabulary 128256, as the 8B shape) from the fixtures
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  "$SBIN" serve --model "$M8" --device cuda --tp "${SERVE_TP:-1}" --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
    --max-batch "${SERVE_BATCH:-256}" --max-step-tokens "${SERVE_STEP:-2048}" --max-waiting 2048 ${SERVE_ARGS:-} >"$L/serve.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  note "serve ready=$ready after ~$((i / 2)) s"
  if [ $ready = 1 ]; then
    step "bench rate 2/s, 467 in / 256 out" 80 bench_serve_rate.log "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b \
      --num-requests "${RATE_N:-60}" --input-len 467 --output-len 256 --request-rate 2 --seed 1 --json
    step "bench max concurrency, ${MAX_N:-1000} x ${MAX_LEN:-1000}/${MAX_LEN:-1000}" "${MAX_T:-330}" bench_serve_max.log "$B/shardserve" bench --url http://127.0.0.1:8000 \
      --model llama-3-8b --num-requests "${MAX_N:-1000}" --input-len "${MAX_LEN:-1000}" --output-len "${MAX_LEN:-1000}" --seed 1 --json
    python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics", timeout=5).read().decode())' >"$L/metrics.txt" 2>&1
    note "$(grep -E '^shardserve_steps_(paced|paced_late|planned_ahead)_total|^shardserve_steps_total' "$L/metrics.txt" | tr '\n' ' ')"
  fi
  kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
  grep -h '^{' "$L"/bench_serve_*.log | tee -a "$S"
fi
if has ctx128; then
  # Session 33: the default context is the model's own (the 8B shape's config: 131,072 positions), capped at what
  # the KV cache holds. A server started without --max-seq-len logs its context, then serves CTX128_LENS-token
  # prompts (default 32,000 and 120,000), CTX128_N requests each one at a time, 64 tokens out; then
  # CTX128_BATCH=N requests of 16,000 tokens at once.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b >"$L/ctx128_serve.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  grep -hE "context|KV cache" "$L/ctx128_serve.log" | cut -c1-200 | tee -a "$S"
  if [ $ready = 1 ]; then
    for n in ${CTX128_LENS:-32000 120000}; do
      step "serve ${CTX128_N:-2} x $n/64, one at a time" 240 "bench_ctx128_$n.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
        --model llama-3-8b --num-requests "${CTX128_N:-2}" --concurrency 1 --input-len "$n" --output-len 64 --seed "$n" --json --quiet
      grep -h '^{' "$L/bench_ctx128_$n.log" | python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
print("  %s: ok %s, ttft p50 %.1f max %.1f ms, tpot p50 %.2f ms, output %.1f tok/s" % (sys.argv[1], j["requests"]["ok"],
      j["ttft_ms"]["p50"], j["ttft_ms"]["max"], j["tpot_ms"]["p50"], j["throughput"]["output_tokens_per_s"]))' "$n" 2>&1 | tee -a "$S"
    done
    if [ -n "${CTX128_BATCH:-}" ]; then
      step "serve $CTX128_BATCH x 16000/64 at once" 240 bench_ctx128_batch.log "$B/shardserve" bench --url http://127.0.0.1:8000 \
        --model llama-3-8b --num-requests "$CTX128_BATCH" --input-len 16000 --output-len 64 --seed 7 --json --quiet
      grep -h '^{' "$L/bench_ctx128_batch.log" | cut -c1-600 | tee -a "$S"
    fi
  else
    note "FAIL  ctx128 server not ready"; tail -5 "$L/ctx128_serve.log" | tee -a "$S"
  fi
  kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
fi
if has mixlong; then
  # Session 33: a long prompt beside decoding streams. MIXLONG_CLIENTS (8) streams of 128 in / MIXLONG_OUT (2048) out;
  # 3 s in, one MIXLONG_LEN-token prompt (120,000) with 16 out. Per MIXLONG_VARIANTS server environment ("-": none;
  # SHARDSERVE_PREFILL_ATTENTION_BUDGET=1: beside decodes a chunk's attention counts against the step budget; call 4 of
  # session 33 ran "SS_CHUNK_KEYS=0 -" when that was the default): the streams' token gaps and the long prompt's TTFT.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in ${MIXLONG_VARIANTS:-- SHARDSERVE_PREFILL_ATTENTION_BUDGET=1}; do
    variant "$v"
    env ${ev[@]+"${ev[@]}"} "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
      >"$L/mixlong_serve_$vtag.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    if [ $ready = 1 ]; then
      c=${MIXLONG_CLIENTS:-8}
      "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b --num-requests "$c" --concurrency "$c" --input-len 128 \
        --output-len "${MIXLONG_OUT:-2048}" --seed 3 --json --quiet --requests-out "$L/mixlong_req_$vtag.jsonl" >"$L/mixlong_short_$vtag.log" 2>&1 &
      APID=$!
      sleep 3
      step "long prompt beside $c streams [$v]" 200 "mixlong_long_$vtag.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
        --model llama-3-8b --num-requests 1 --input-len "${MIXLONG_LEN:-120000}" --output-len 16 --seed 5 --json --quiet
      wait $APID
      for f in "$L/mixlong_short_$vtag.log" "$L/mixlong_long_$vtag.log"; do
        grep -h '^{' "$f" | python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
print("  [%s] %s: ok %s, ttft p50 %.1f max %.1f ms, itl p50 %.2f p90 %.2f p99 %.2f max %.1f ms, tpot p50 %.2f ms, out %.1f tok/s, %.1f s" % (
    sys.argv[1], sys.argv[2], j["requests"]["ok"], j["ttft_ms"]["p50"], j["ttft_ms"]["max"], j["itl_ms"]["p50"], j["itl_ms"]["p90"],
    j["itl_ms"]["p99"], j["itl_ms"]["max"], j["tpot_ms"]["p50"], j["throughput"]["output_tokens_per_s"], j["duration_s"]))' "$v" "$(basename "$f" .log)" 2>&1 | tee -a "$S"
      done
    else
      note "FAIL  mixlong server [$v] not ready"
    fi
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
  done
fi
if has lpab; then
  # Session 37: the device sampling path's answers against $OLDB's (the host path for lists, penalties and bias):
  # greedy completions with logprobs 5, a bias and penalties, on the 8B-shaped checkpoint; scripts/gpu/lpab.py
  # compares the texts, tokens and log-probabilities.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for v in new old; do
    sb=$B; [ $v = old ] && sb=$OLDB
    [ -n "$sb" ] || continue
    "$sb/shardserve" serve --model "$M8" --device cuda --port 8000 --served-model-name m >"$L/lpab_$v.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    if [ $ready = 1 ]; then
      step "lpab requests [$v]" 120 "lpab_req_$v.log" python3 scripts/gpu/lpab.py fetch "$L/lpab_$v.json"
    else
      note "FAIL  lpab server [$v] not ready"
    fi
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
  done
  step "lpab compare" 30 "lpab_compare.log" python3 scripts/gpu/lpab.py compare "$L/lpab_new.json" "$L/lpab_old.json"
  tail -12 "$L/lpab_compare.log" | tee -a "$S"
fi
if has serveab; then
  # Session 12: the scheduler's overlap (steps planned ahead, tokens fed on the device) against --no-overlap,
  # through HTTP: closed-loop concurrency 1 and 8 (SERVEAB_CONC), 128 in / 256 out, alternating servers.
  # SERVEAB_GPUS (default 0) and SERVEAB_ARGS (e.g. "--tp 2") serve a sharded replica.
  export CUDA_VISIBLE_DEVICES=${SERVEAB_GPUS:-0}
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for round in ${SERVEAB_ROUNDS:-1 2}; do
    for v in ${SERVEAB_VARIANTS:-- --no-overlap}; do # a flag (--x), an environment setting (A=1) or old ($OLDB's server)
      vt=overlap; fl=(); en=(); sb=$B
      case "$v" in -) ;; old) [ -n "$OLDB" ] || continue; vt=old; sb=$OLDB ;; --no-overlap) vt=nooverlap; fl=(--overlap off) ;; --*) vt=${v#--}; fl=("$v") ;; *) vt=$(echo "$v" | tr '=,' '__'); IFS=, read -ra en <<<"$v" ;; esac
      env ${en[@]+"${en[@]}"} "$sb/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
        ${SERVEAB_ARGS:-} ${fl[@]+"${fl[@]}"} >"$L/serveab_${vt}_$round.log" 2>&1 &
      SPID=$!
      wait_ready $SPID
      if [ $ready = 1 ]; then
        # SERVEAB_BODIES (session 36): request-body variants, each sent with bench --extra-body: "-" plain, "jobj"
        # response_format json_object, "jint" a json_schema {"v": [integers...]} (masks outside strings every token),
        # "lp1" logprobs 1 (the host sampling path until session 37), "jlp" both json_object and logprobs 1; session 37:
        # "lp5" logprobs 5, "pen" frequency and presence penalties, "bias" a logit_bias of three tokens
        for bt in ${SERVEAB_BODIES:--}; do
          case "$bt" in
            -) xb=(); btag= ;;
            jobj) xb=(--extra-body '{"response_format":{"type":"json_object"}}'); btag=_jobj ;;
            lp1) xb=(--extra-body '{"logprobs":1}'); btag=_lp1 ;;
            jlp) xb=(--extra-body '{"logprobs":1,"response_format":{"type":"json_object"}}'); btag=_jlp ;;
            jint) xb=(--extra-body '{"response_format":{"type":"json_schema","json_schema":{"name":"v","schema":{"type":"object","properties":{"v":{"type":"array","items":{"type":"integer"}}},"required":["v"]}}}}'); btag=_jint ;;
            lp5) xb=(--extra-body '{"logprobs":5}'); btag=_lp5 ;; # session 37: lists, penalties and bias on the device
            pen) xb=(--extra-body '{"frequency_penalty":0.5,"presence_penalty":0.25}'); btag=_pen ;;
            bias) xb=(--extra-body '{"logit_bias":{"1000":-5,"2000":2.5,"30000":-100}}'); btag=_bias ;;
            *) note "unknown SERVEAB_BODIES entry $bt"; continue ;;
          esac
          for c in ${SERVEAB_CONC:-1 8}; do
            step "serve c$c 128/256 [$vt${btag}] r$round" 90 "bench_serveab_c${c}_${vt}${btag}_$round.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
              --model llama-3-8b --num-requests $((c * 4)) --concurrency "$c" --warmup "$c" --input-len 128 --output-len 256 --seed 1 \
              ${xb[@]+"${xb[@]}"} --json --quiet
          done
        done
        # SERVEAB_RATE_N (session 28): issue 7's TTFT / ITL load too, SERVEAB_RATES requests/s (default 2) of 467 in /
        # 256 out; SERVEAB_MAX_N: that many 1000 / 1000 requests at once
        if [ -n "${SERVEAB_RATE_N:-}" ]; then
          for rt in ${SERVEAB_RATES:-2}; do
            rn=$SERVEAB_RATE_N; [ "$rt" != 2 ] && rn=$((SERVEAB_RATE_N * rt / 2))
            step "serve rate $rt/s 467/256 [$vt] r$round" 90 "bench_serveab_rate$([ "$rt" != 2 ] && echo "$rt")_${vt}_$round.log" \
              "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b --num-requests "$rn" --input-len 467 \
              --output-len 256 --request-rate "$rt" --seed 1 --json --quiet
          done
        fi
        [ -n "${SERVEAB_MAX_N:-}" ] && step "serve $SERVEAB_MAX_N x 1000/1000 [$vt] r$round" 150 "bench_serveab_max_${vt}_$round.log" \
          "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b --num-requests "$SERVEAB_MAX_N" --input-len 1000 \
          --output-len 1000 --seed 1 --json --quiet
        python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics", timeout=5).read().decode())' >"$L/serveab_metrics_${vt}_$round.txt" 2>&1
        note "[$vt] r$round $(grep -E '^shardserve_steps_(paced|paced_late|planned_ahead)_total|^shardserve_steps_total' "$L/serveab_metrics_${vt}_$round.txt" | tr '\n' ' ')"
      else
        note "FAIL  serve [$vt] not ready"
      fi
      kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
    done
  done
  for f in "$L"/bench_serveab_*.log; do
    python3 - "$f" <<'PY' | tee -a "$S"
import json, sys, os
for line in open(sys.argv[1]):
    if line.startswith('{'):
        j = json.loads(line)
        out = {'ok': j['requests']['ok'], 'failed': j['requests']['failed'],
               'out_tok_s': j['throughput']['output_tokens_per_s'], 'out_tokens': j['tokens']['output'],
               'short': j['tokens']['short_outputs']}
        for k in ('tpot_ms', 'itl_ms', 'ttft_ms'):
            out[k] = {q: j[k][q] for q in ('mean', 'p50', 'p90', 'p99') if q in j[k]}
        print(os.path.basename(sys.argv[1]), json.dumps(out))
PY
  done
fi
if has spec; then
  # Session 39: speculative decoding by prompt lookup (serve --speculative-ngram K; SPEC_KS, 0: off) on the demo model
  # (real text: SPEC_N passages of SPEC_CHARS characters of its held-out corpus, greedy, SPEC_GEN new tokens, one request
  # at a time; the texts compared with K 0's) and on the 8B shape (the same passages through the Llama 3.1 tokenizer;
  # random weights), then bench's closed loop of random prompts at SPEC_CONC clients. The drafts' counters from /metrics.
  # SPEC_LP=N: the passages with N top log-probabilities a token (compared too); SPEC_CONTROL=1: K 0's passages also 4 at
  # a time, compared with one at a time (what batching alone does to the texts). SPEC_N=0: no passages; SPEC_INPUT: the
  # bench's prompt lengths (default 128); a SPEC_KS entry K:A=1,B=2 runs that server with those environment settings.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$W/.corpus" ] || tar -C "$W" -xJf .gpu-carry/corpus.tar.xz
  for mdl in ${SPEC_MODELS:-demo 8b}; do
    mp=$ROOT/models/shardserve-demo
    if [ "$mdl" = 8b ]; then
      mp=$M8
      [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
      cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
    fi
    for round in ${SPEC_ROUNDS:-1 2}; do
      for kv in ${SPEC_KS:-0 7}; do # K, or K:A=1,B=2 (environment settings of that server)
        k=${kv%%:*}; en=(); [ "$kv" != "$k" ] && IFS=, read -ra en <<<"${kv#*:}"
        vt=${mdl}_k${k}$(echo "${kv#$k}" | tr ':=,' '___')_$round
        env ${en[@]+"${en[@]}"} "$B/shardserve" serve --model "$mp" --device cuda --port 8000 --metrics-port 8002 --served-model-name m \
          --speculative-ngram "$k" ${SPEC_ARGS:-} >"$L/spec_serve_$vt.log" 2>&1 &
        SPID=$!
        wait_ready $SPID
        if [ $ready = 1 ]; then
          [ "${SPEC_N:-16}" -gt 0 ] && step "spec passages [$vt]" 200 "spec_pass_$vt.log" python3 scripts/gpu/spec_check.py run http://127.0.0.1:8000 \
            "$W/.corpus/valid.txt" "${SPEC_N:-16}" "${SPEC_GEN:-200}" "$L/spec_$vt.json" "${SPEC_CHARS:-800}" 1 "${SPEC_LP:-0}"
          [ "${SPEC_N:-16}" -gt 0 ] && tail -1 "$L/spec_pass_$vt.log" | tee -a "$S"
          if [ "$k" = 0 ] && [ "${SPEC_N:-16}" -gt 0 ] && [ -n "${SPEC_CONTROL:-}" ]; then # the same passages 4 at a time: batching's own effect on the texts
            step "spec passages 4 at a time [$vt]" 200 "spec_pass_${vt}_c4.log" python3 scripts/gpu/spec_check.py run \
              http://127.0.0.1:8000 "$W/.corpus/valid.txt" "${SPEC_N:-16}" "${SPEC_GEN:-200}" "$L/spec_${vt}_c4.json" "${SPEC_CHARS:-800}" 4 "${SPEC_LP:-0}"
            python3 scripts/gpu/spec_check.py compare "$L/spec_$vt.json" "$L/spec_${vt}_c4.json" | tee -a "$S"
          fi
          for c in ${SPEC_CONC:-1 4}; do
            for il in ${SPEC_INPUT:-128}; do # prompt lengths (random ids)
              for sd in ${SPEC_SEEDS:-1}; do # bench's seeds (other prompts); SPEC_REQS: requests a client (default 4)
                ilt=; [ "$il" != 128 ] && ilt=_in$il
                [ "$sd" != 1 ] && ilt=${ilt}_s$sd
                step "spec bench c$c in $il seed $sd [$vt]" 200 "bench_spec_c${c}${ilt}_$vt.log" "$B/shardserve" bench --url http://127.0.0.1:8000 \
                  --model m --num-requests $((c * ${SPEC_REQS:-4})) --concurrency "$c" --warmup "$c" --input-len "$il" --output-len 256 --seed "$sd" --json --quiet
              done
            done
          done
          python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics", timeout=5).read().decode())' >"$L/spec_metrics_$vt.txt" 2>&1
          note "[$vt] $(grep -E '^shardserve_(spec_[a-z_]*|steps_planned_ahead|generation_tokens)_total|^shardserve_steps_total|^shardserve_step_seconds_total' "$L/spec_metrics_$vt.txt" | sed 's/{[^}]*}//' | tr '\n' ' ')"
        else
          note "FAIL  spec serve [$vt] not ready"; tail -3 "$L/spec_serve_$vt.log" | tee -a "$S"
        fi
        kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
      done
      for k in ${SPEC_KS:-0 7}; do
        case "$k" in *:*) continue ;; esac
        [ "$k" != 0 ] && [ -f "$L/spec_${mdl}_k0_$round.json" ] && [ -f "$L/spec_${mdl}_k${k}_$round.json" ] &&
          python3 scripts/gpu/spec_check.py compare "$L/spec_${mdl}_k0_$round.json" "$L/spec_${mdl}_k${k}_$round.json" | tee -a "$S"
      done
    done
    for f in "$L"/bench_spec_*"$mdl"_*.log; do
      [ -f "$f" ] && echo "$(basename "$f" .log) $(grep -ho '"output_tokens_per_s":[0-9.]*\|"p50":[0-9.]*' "$f" | head -3 | tr '\n' ' ')" | tee -a "$S"
    done
  done
fi
if has vstep; then
  # Session 40: what a speculative verify step costs (bench_decode --drafts D: every sequence's token and D drafts, none
  # confirmed) on the 8B shape, each draft chain one attention tile (SS_GRAPH_TILE=8, the default) or one tile a token
  # (SS_GRAPH_TILE=1, as before). VSTEP_CASES: "BATCH:PROMPT:DRAFTS[:ENV=V,ENV=V]", VSTEP_REPS rounds interleaved.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  for rep in $(seq 1 "${VSTEP_REPS:-1}"); do
    for cs in ${VSTEP_CASES:-1:8192:0 1:8192:7:SS_GRAPH_TILE=1 1:8192:7}; do
      IFS=: read -r vb vp vd venv <<<"$cs"; ev=(); [ -n "$venv" ] && IFS=, read -ra ev <<<"$venv"
      vt=b${vb}_p${vp}_d${vd}$(echo "${venv:+_$venv}" | tr '=,' '__')_$rep
      step "verify step $cs #$rep" 90 "bench_vstep_$vt.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" --model "$M8" \
        --device cuda --batch "$vb" --prompt "$vp" --gen "${VSTEP_GEN:-64}" --drafts "$vd" --json
      note "vstep $cs #$rep: $(grep -ho '"median_step_ms":[0-9.]*\|"tokens_fnv":"[0-9a-f]*"' "$L/bench_vstep_$vt.log" | tr '\n' ' ')"
    done
  done
fi
if has seqform; then
  # Session 42: the decode form of a CTA per sequence (attn_decode_seq.cu) by its default rule (decode-only launches of
  # a token per SM or more, context bounds up to 256) against SS_ATTN_SEQ=0, never run on the default path in session
  # 42: bench_decode at batch 128 / 256 (128 + 64: bounds 256), then a server at 256 closed-loop clients, 128 in / 128
  # out (contexts to 256), each variant SEQF_REPS times, alternating; the consistency test's attention cases first.
  export CUDA_VISIBLE_DEVICES=0
  step "consistency, attention cases" 120 seqform_cons.log env SS_TEST_ONLY="test_attention*" "$B/tests/test_backend_consistency"
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  for rep in $(seq 1 "${SEQF_REPS:-2}"); do
    for v in - SS_ATTN_SEQ=0; do
      variant "$v"
      for bsz in 128 256; do
        step "decode 8B batch $bsz [$v] #$rep" 60 "bench_seqf_b${bsz}_${vtag}_$rep.log" env ${ev[@]+"${ev[@]}"} "$B/tools/bench_decode" \
          --model "$M8" --device cuda --batch $bsz --prompt 128 --gen 64 --json
        note "seqform b$bsz [$v] #$rep: $(grep -ho '"median_step_ms":[0-9.]*\|"warm_tok_s":[0-9.]*' "$L/bench_seqf_b${bsz}_${vtag}_$rep.log" | tr '\n' ' ')"
      done
      closed_loop "seqf_serve_${vtag}_$rep" 256 1024 "$v"
    done
  done
fi
if has h100; then
  # Session 43: the first H100 lent since session 1. The headline numbers on the card the issues' goals name:
  # the copy ceiling (bench_backend's first lines), batch 1 bf16 (128 + 256 and warm 128 + 128) and with fp8
  # weights, op by op for reference, batches 8 / 32 / 128 / 256, prefill 2,048 / 467, serving at 2 requests/s
  # (467 in / 256 out: issue 7's TTFT 20 ms / ITL 7 ms goals) and one closed-loop client (128 / 256).
  export CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee -a "$S"
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  note "gen_checkpoint llama-3-8b: $(grep -E 'GB/s' "$L/gen8b.log" | tr '\n' ' ')"
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  h1() { # h1 TAG ARGS...: one bench_decode run, its JSON numbers noted
    local tag=$1; shift
    step "decode 8B $tag" 120 "bench_h_$tag.log" "$B/tools/bench_decode" --model "$M8" --device cuda --json "$@"
    note "h100 $tag: $(grep -ho '"median_step_ms":[0-9.]*\|"warm_tok_s":[0-9.]*\|"decode_tok_s":[0-9.]*\|"prefill_tok_s":[0-9.]*' "$L/bench_h_$tag.log" | tr '\n' ' ')"
  }
  for r in 1 2; do
    h1 "b1_256_$r" --prompt 128 --gen 256
    h1 "b1_128_$r" --prompt 128 --gen 128
    h1 "b1_fp8_$r" --prompt 128 --gen 128 --quantization fp8
  done
  h1 b1_nog --prompt 128 --gen 128 --no-graphs
  h1 b1_512 --prompt 512 --gen 128
  for bsz in 8 32 128 256; do h1 "b$bsz" --batch $bsz --prompt 128 --gen 64; done
  h1 prefill2048 --prompt 2048 --gen 4
  h1 prefill467 --prompt 467 --gen 4
  "$B/shardserve" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
    --max-batch 256 --max-step-tokens 2048 --max-waiting 2048 >"$L/h_serve.log" 2>&1 &
  SPID=$!
  wait_ready $SPID
  note "serve ready=$ready after ~$((i / 2)) s"
  if [ $ready = 1 ]; then
    step "serve rate 2/s, 467 in / 256 out" 80 bench_h_rate.log "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b \
      --num-requests 60 --input-len 467 --output-len 256 --request-rate 2 --seed 1 --json --quiet
    step "serve 1 client, 128 in / 256 out" 60 bench_h_c1.log "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b \
      --num-requests 24 --concurrency 1 --warmup 2 --input-len 128 --output-len 256 --seed 1 --json --quiet
    step "serve 256 clients, 128 in / 128 out" 90 bench_h_c256.log "$B/shardserve" bench --url http://127.0.0.1:8000 --model llama-3-8b \
      --num-requests 1024 --concurrency 256 --warmup 256 --input-len 128 --output-len 128 --seed 1 --json --quiet
    grep -h '^{' "$L"/bench_h_rate.log "$L"/bench_h_c1.log "$L"/bench_h_c256.log | tee -a "$S"
  fi
  kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
  step "backend microbenchmarks (copy ceiling first)" 150 h_microbench.log "$B/tools/bench_backend"
  head -12 "$L/h_microbench.log" | tee -a "$S"
fi
if has maxb; then
  # Session 43: issue 7's max-concurrency run (1000 requests of 1000 in / 1000 out, all at once) against servers of
  # MAXB_BATCHES running sequences (--max-batch; default 256 384 512): an H100's KV cache (449k tokens) holds ~300
  # sequences at the run's mean context, so the default 256 may leave bandwidth unused. Output tok/s, TPOT and the
  # preemptions each.
  export CUDA_VISIBLE_DEVICES=0
  [ -d "$M8" ] || "$B/tools/gen_checkpoint" --shape llama-3-8b --out "$M8" >"$L/gen8b.log" 2>&1
  cp /work/shared/fixtures/models/e2e-llama3-tok/tokenizer.json /work/shared/fixtures/models/e2e-llama3-tok/tokenizer_config.json "$M8/"
  # A case "BATCH:BLOCKS" (session 44) also caps the KV cache (--num-kv-blocks; an H100's was 28,068 blocks of 16);
  # "BATCH:BLOCKS:DTYPE" (session 45) sets --kv-cache-dtype too (an H100's bytes in fp8: 56,136 blocks).
  # MAXB_OLD=1 (session 47): each case on $OLDB's server too, right after this build's (tags _old). MAXB_OFF="VAR=VALUE"
  # (session 48): each case on this build's server again with that switch set (tags _off). MAXB_N: requests (1000).
  for mcase in ${MAXB_BATCHES:-256 384 512}; do
   for mv in new ${MAXB_OLD:+${OLDB:+old}} ${MAXB_OFF:+off}; do
    mbin=$B/shardserve; [ "$mv" = old ] && mbin=$OLDB/shardserve
    menv=(); [ "$mv" = off ] && menv=("$MAXB_OFF")
    IFS=: read -r mbatch mblocks mkv <<<"$mcase"; mb=${mbatch}${mblocks:+_kv$mblocks}${mkv:+_$mkv}; [ "$mv" != new ] && mb=${mb}_$mv
    env "${menv[@]}" "$mbin" serve --model "$M8" --device cuda --port 8000 --metrics-port 8002 --served-model-name llama-3-8b \
      --max-batch "$mbatch" ${mblocks:+--num-kv-blocks "$mblocks"} ${mkv:+--kv-cache-dtype "$mkv"} --max-step-tokens 2048 --max-waiting 2048 >"$L/maxb_serve_$mb.log" 2>&1 &
    SPID=$!
    wait_ready $SPID
    if [ $ready = 1 ]; then
      step "max concurrency ${MAXB_N:-1000} x 1000/1000, --max-batch $mbatch${mblocks:+ --num-kv-blocks $mblocks}${mkv:+ --kv-cache-dtype $mkv} [$mv]" "${MAX_T:-260}" "bench_maxb_$mb.log" "$B/shardserve" bench \
        --url http://127.0.0.1:8000 --model llama-3-8b --num-requests "${MAXB_N:-1000}" --input-len 1000 --output-len 1000 --seed 1 --json --quiet
      python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8002/metrics", timeout=5).read().decode())' >"$L/maxb_metrics_$mb.txt" 2>&1
      note "maxb $mb: $(grep -ho '"output_tokens_per_s":[0-9.]*' "$L/bench_maxb_$mb.log" | head -1) tpot $(grep -o '"tpot_ms":{[^}]*}' "$L/bench_maxb_$mb.log" | grep -o '"p50":[0-9.]*') $(grep -E '^shardserve_(preemptions|prefix_cache_hits)_total' "$L/maxb_metrics_$mb.txt" | sed 's/{[^}]*}//' | tr '\n' ' ')"
    else
      note "FAIL  maxb $mb: server not ready"; tail -3 "$L/maxb_serve_$mb.log" | tee -a "$S"
    fi
    kill -TERM $SPID 2>/dev/null; sleep 2; kill -9 $SPID 2>/dev/null
   done
  done
fi
if has wgprof; then
  # Session 53: the wgmma prefill attention with a loading warpgroup (SS_ATTN_WG_WS=1, opt-in) against the default
  # form (0). The consistency test's attention cases (WGPROF_TESTS, a SS_TEST_ONLY pattern), bench_backend
  # --attn-prefill in both forms, WGPROF_ROUNDS rounds interleaved, PyTorch's flash attention on the same shapes
  # (scripts/gpu/sdpa_ref.py), then Nsight Compute on one launch of each form at WGPROF_AT (default 30,720): the
  # full set for WGPROF_FULL (default 1), the summary sections for the others.
  export CUDA_VISIBLE_DEVICES=0
  step "consistency: ${WGPROF_TESTS:-test_attention*}" 240 wgprof_consistency.log env SS_TEST_ONLY="${WGPROF_TESTS:-test_attention*}" \
    "$B/tests/test_backend_consistency"
  grep -hE 'wgmma|FAIL|rror|PASSED' "$L/wgprof_consistency.log" | head -30 | tee -a "$S"
  for r in $(seq 1 "${WGPROF_ROUNDS:-2}"); do
    for ws in 1 0; do
      step "attention prefill forms ws$ws round $r" 120 "wgprof_forms_ws${ws}_$r.log" env SS_ATTN_WG_WS=$ws \
        "$B/tools/bench_backend" --attn-prefill --iters 20
      grep "attn wg\|attn mt2" "$L/wgprof_forms_ws${ws}_$r.log" | sed "s/^/ws$ws /" | tee -a "$S"
    done
  done
  [ "${WGPROF_SDPA:-1}" = 1 ] && step "sdpa reference" 120 wgprof_sdpa.log python3 scripts/gpu/sdpa_ref.py
  grep -v "^$" "$L/wgprof_sdpa.log" 2>/dev/null | tail -8 | tee -a "$S"
  for ws in ${WGPROF_NCU:-1 0}; do
    sets=(--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis)
    [ "$ws" = "${WGPROF_FULL:-1}" ] && sets=(--set full --import-source no)
    step "ncu ws$ws, wgmma prefill at ${WGPROF_AT:-30720}" 240 "wgprof_ncu_ws$ws.log" env SS_ATTN_WG_WS=$ws ncu \
      --clock-control none --kernel-name regex:attn_wgmma --launch-skip 2 --launch-count 1 "${sets[@]}" \
      -o "$W/wgprof_ws$ws" -f "$B/tools/bench_backend" --attn-prefill-at "${WGPROF_AT:-30720}" --iters 1
    ncu --import "$W/wgprof_ws$ws.ncu-rep" --print-details all >"$L/wgprof_details_ws$ws.log" 2>&1
    cp "$W/wgprof_ws$ws.ncu-rep" "$OUTD/" 2>/dev/null
    grep -E "Duration|Throughput|Pipe|Warp Cycles|Issued|Eligible|Stall|stall|Bank|L2 Hit|Registers|Shared Memory" \
      "$L/wgprof_details_ws$ws.log" | head -60 | sed "s/^/ws$ws /" | tee -a "$S"
    if [ "$ws" = "${WGPROF_FULL:-1}" ]; then
      ncu --import "$W/wgprof_ws$ws.ncu-rep" --page source --print-source sass --csv >"$L/wgprof_sass_ws$ws.csv" 2>&1
      ncu --import "$W/wgprof_ws$ws.ncu-rep" --page raw --csv >"$L/wgprof_raw_ws$ws.csv" 2>&1
      wc -l "$L/wgprof_sass_ws$ws.csv" "$L/wgprof_raw_ws$ws.csv" | tee -a "$S"
    fi
  done
fi
if has soak; then
  # Session 12: the serving soak (mixed good and bad requests, disconnects mid-stream, from threads) on the GPU,
  # where the scheduler plans steps ahead: every answer as expected, nothing left running, exit code 0.
  export CUDA_VISIBLE_DEVICES=0
  step "serving soak on cuda (${SOAK_N:-3000} requests, ${SOAK_S:-60} s)" 150 soak.log env SOAK_SERVER_ARGS="--device cuda" \
    python3 tests/serve/soak.py "$B/shardserve" /work/shared/fixtures "${SOAK_N:-3000}" "${SOAK_S:-60}"
  grep -h "^soak:\|FAIL" "$L/soak.log" | tee -a "$S"
fi
note "---- benchmark lines"
cat "$L"/bench_*.log 2>/dev/null | grep '^{' | tee -a "$S"

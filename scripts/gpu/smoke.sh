#!/usr/bin/env bash
# smoke.sh — one device call that checks main on a GPU end to end, after scripts/gpu/stage-lead.sh: session.sh's
# consistency test and goldens, a cuda generate, a cuda serve (a completion, a loose chunk size refused, SIGTERM exit
# 0), and a prepared engine on cuda with one flipped byte (exit 3). Run: `bash scripts/gpu/smoke.sh`, carry .gpu-carry.
export NCCL_NVLS_ENABLE=0
O=$OUT
nvidia-smi -L
OUT=$O/a BUDGET=330 bash scripts/gpu/session.sh check >/dev/null 2>&1
grep -v '^{' $O/a/summary.txt
tar -C /tmp -xJf $O/a/logs.tar.xz 2>/dev/null
grep -h "cuda_libs\|FAILED\|PASSED" /tmp/logs/consistency.log /tmp/logs/golden_cuda.log 2>/dev/null | head -20
BD=$(cat /tmp/ssg/build_dir.txt)
export LD_LIBRARY_PATH=/tmp/ssg/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=/work/shared/fixtures/models/e2e-llama3-tok
timeout 60 "$BD/shardserve" generate --quiet --device cuda --model $M --prompt "The capital of France is" --max-tokens 8; echo "generate rc $?"
timeout 90 "$BD/shardserve" serve --device cuda --model $M --port 8000 --metrics-port 8002 --max-seq-len 512 > $O/serve.log 2>&1 &
SP=$!
for i in $(seq 1 120); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/v2/health/ready 2>/dev/null | grep -q 200 && break; sleep 0.5; done
curl -s http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' -d '{"prompt":"The capital of France is","max_tokens":8}' | head -c 400; echo
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n' | timeout 5 curl -s --max-time 3 telnet://127.0.0.1:8000 | head -c 300; echo
kill -TERM $SP; wait $SP; echo "serve rc $?"
tail -3 $O/serve.log
# session 64: an engine on cuda (the quick digest read beside the load), then one flipped byte: exit 3
E=$("$BD/shardserve" prepare --quiet --model $M --cache /tmp/ssc); echo "prepare rc $? $E"
timeout 60 "$BD/shardserve" generate --device cuda --model "$E" --prompt "The capital of France is" --max-tokens 8 2>$O/eng.log; echo "engine generate rc $?"
grep -i "quick\|digest\|loading" $O/eng.log | head -3
cp -r "$E" /tmp/bad && F=/tmp/bad/rank-00000.safetensors && chmod u+w $F && printf 'Z' | dd of=$F bs=1 seek=$(( $(stat -c %s $F) - 9 )) conv=notrunc status=none
timeout 60 "$BD/shardserve" generate --quiet --device cuda --model /tmp/bad --prompt "The capital" --max-tokens 2; echo "damaged engine rc $? (3 expected)"

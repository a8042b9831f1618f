#!/usr/bin/env bash
# eval_ppl_demo.sh — tools/eval_ppl against the bundled demo model's golden.json: its error paths, then the
# held-out perplexity that train.py measured with PyTorch (float32) on the same valid.txt, reproduced by the
# cpu backend, and with fp8 projection weights (W8A16 on the cpu) close to it.
# usage: eval_ppl_demo.sh EVAL_PPL SOURCE_DIR   (exit 77 = skipped: no corpus, see prepare_corpus.sh)
set -uo pipefail
EP=$1
SRC=$2
MODEL=$SRC/models/shardserve-demo
VALID=${SS_DEMO_VALID:-$SRC/tools/demo-model/.corpus/valid.txt}
# the valid.txt the model was evaluated on (prepare_corpus.sh from Debian 12's packages)
VALID_SHA=ffad66a847de3aefb617719a5407d312bfe3e39a6dcecfe5e8b6ba530cd4a928
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# error paths: each refused with rc 2 and a message that names the problem
expect_refusal() { # want-substring args...
  local want=$1
  shift
  "$EP" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ $rc -eq 2 ] || fail "eval_ppl $*: rc $rc, want 2 ($(cat "$tmp/err"))"
  grep -q -- "$want" "$tmp/err" || fail "eval_ppl $*: error '$(cat "$tmp/err")' does not say '$want'"
}
expect_refusal "--model and --text are required" --model "$MODEL"
expect_refusal "$tmp/missing.txt" --model "$MODEL" --text "$tmp/missing.txt" --device cpu
expect_refusal "--window must be 2..8192" --model "$MODEL" --text "$MODEL/config.json" --window 1
expect_refusal "--quantization must be" --model "$MODEL" --text "$MODEL/config.json" --quantization int3
: >"$tmp/empty.txt"
expect_refusal "fewer than 2 tokens" --model "$MODEL" --text "$tmp/empty.txt" --device cpu
printf 'x\n' >"$tmp/bad.txt"
printf '\xff\xfe\n' >>"$tmp/bad.txt"
expect_refusal "UTF-8" --model "$MODEL" --text "$tmp/bad.txt" --device cpu

# a short text two ways: one window a step and four, the same loss to float32's last bits
head -c 20000 "$MODEL/golden.json" | tr -c '[:alnum:] .,\n' ' ' >"$tmp/short.txt"
a=$("$EP" --model "$MODEL" --text "$tmp/short.txt" --device cpu --window 64 --batch 1 --json) || fail "batch 1 run"
b=$("$EP" --model "$MODEL" --text "$tmp/short.txt" --device cpu --window 64 --batch 4 --json) || fail "batch 4 run"
python3 - "$a" "$b" <<'PY' || fail "batch 1 and 4 differ: $a / $b"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
assert a["tokens_predicted"] == b["tokens_predicted"] > 1000, (a, b)
assert abs(a["loss"] - b["loss"]) < 1e-5, (a["loss"], b["loss"])
PY

if [ ! -f "$VALID" ]; then
  echo "SKIP: no $VALID (bash tools/demo-model/prepare_corpus.sh makes it)"
  exit 77
fi
if [ "$(sha256sum "$VALID" | cut -d' ' -f1)" != "$VALID_SHA" ]; then
  echo "SKIP: $VALID is not the text the demo model was evaluated on (sha256 differs)"
  exit 77
fi
ref=$("$EP" --model "$MODEL" --text "$VALID" --device cpu --json) || fail "eval_ppl on valid.txt"
q8=$("$EP" --model "$MODEL" --text "$VALID" --device cpu --quantization fp8 --json) || fail "eval_ppl --quantization fp8"
echo "none: $ref"
echo "fp8:  $q8"
python3 - "$ref" "$q8" "$MODEL/golden.json" <<'PY' || fail "perplexities off the golden"
import json, sys
ref, q8, gold = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.load(open(sys.argv[3]))
# the count and the float32 loss of PyTorch's measurement (reduction order differs: ~1e-5)
assert ref["tokens_predicted"] == gold["valid_tokens_predicted"], (ref, gold["valid_tokens_predicted"])
assert abs(ref["loss"] - gold["valid_loss"]) < 2e-4, (ref["loss"], gold["valid_loss"])
assert abs(ref["bits_per_byte"] - gold["bits_per_byte"]) < 1e-3, (ref["bits_per_byte"], gold["bits_per_byte"])
# fp8 weights: measured +0.05% perplexity; a wrong scale or layout is far off
assert abs(q8["perplexity"] / ref["perplexity"] - 1) < 0.01, (q8["perplexity"], ref["perplexity"])
assert q8["loss"] != ref["loss"], "fp8 gave the very same loss: not quantised?"
PY
echo "ok"

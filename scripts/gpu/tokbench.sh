#!/usr/bin/env bash
# tokbench.sh — encode throughput of shardserve's tokenizer beside Hugging Face `tokenizers` on the same
# machine, same text (the demo corpus, 20 MB), same tokenizer.json (Llama 3.1), one thread each.
set -u
cd "$(dirname "$0")/../.."
W=/tmp/sstok; rm -rf $W; mkdir -p $W
tar -C $W -xJf .gpu-carry/bin.tar.xz
tar -C $W -xJf .gpu-carry/fixtures.tar.xz
tar -C $W -xJf .gpu-carry/corpus.tar.xz
export LD_LIBRARY_PATH=$W/lib
head -c 20000000 $W/.corpus/train.txt >$W/text.txt
M=$W/fixtures/models/e2e-llama3-tok
echo "== shardserve (C, one thread)"
$W/build/tools/bench_tokenizer $M $W/text.txt 20 2>&1 | tail -3
echo "== HF tokenizers (Rust via Python, one thread)"
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 - "$M/tokenizer.json" $W/text.txt <<'PY'
import sys, time, tokenizers
tok = tokenizers.Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
docs = text.split("\n\n")
t = time.perf_counter(); ids = tok.encode(text, add_special_tokens=False).ids; d = time.perf_counter() - t
print("tokenizers %s: one call on %.1f MB: %.2f MB/s (%d ids)" % (tokenizers.__version__, len(text.encode()) / 1e6, len(text.encode()) / 1e6 / d, len(ids)))
t = time.perf_counter(); n = 0
for doc in docs:
    n += len(tok.encode(doc, add_special_tokens=False).ids)
d = time.perf_counter() - t
print("tokenizers: %d documents one by one: %.2f MB/s" % (len(docs), len(text.encode()) / 1e6 / d))
PY

#!/usr/bin/env python3
"""test_spec.py — speculative decoding by prompt lookup through `shardserve serve` on the bundled demo model (cpu):
the same completions as without it (text, tokens, their log-probabilities and top lists, greedy and sampled with a seed,
streamed or not) while drafts are proposed and confirmed (its /metrics counters), the flag's bounds and its
environment twin.
Usage: test_spec.py BINARY SOURCE_DIR"""
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check, finish, sample_value, stop_checked  # noqa: E402

BINARY, SOURCE = sys.argv[1:3]
MODEL = os.path.join(SOURCE, "models", "shardserve-demo")
PROMPTS = [
    "And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided "
    "the light from the darkness. And God called the light Day, and the darkness he called Night.",
    "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth me beside the "
    "still waters. He restoreth my soul:",
    "And the children of Israel",
]


def same(a, b):
    """The same completions: texts, tokens listed and their order exactly; log-probabilities within 1e-4 (the cpu
    backend splits a step's rows over its threads by their count: the sums differ in the last bits)."""
    def close(x, y):
        if isinstance(x, dict):
            return list(x) == list(y) and all(close(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)):
            return len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
        if isinstance(x, float):
            return abs(x - y) <= 1e-4
        return x == y
    assert close(a, b), (a, b)


def completions(srv, stream=False, **fields):
    out = []
    for p in PROMPTS:
        body = dict({"model": "m", "prompt": p, "max_tokens": 48, "ignore_eos": True, "logprobs": 2}, **fields)
        if stream:
            body["stream"] = True
            st, _, data = srv.request("POST", "/v1/completions", body)
            assert st == 200, (st, data[:200])
            chunks = [json.loads(line[6:]) for line in data.decode().split("\n")
                      if line.startswith("data: {")]
            out.append(("".join(c["choices"][0]["text"] for c in chunks),
                        [lp for c in chunks for lp in (c["choices"][0].get("logprobs") or {}).get("token_logprobs", [])]))
        else:
            st, _, j, data = srv.post("/v1/completions", body)
            assert st == 200, (st, data[:200])
            c = j["choices"][0]
            out.append((c["text"], c["logprobs"]["token_logprobs"], c["logprobs"]["top_logprobs"]))
    return out


plain = Server(BINARY, MODEL, ["--served-model-name", "m"])
spec = Server(BINARY, MODEL, ["--served-model-name", "m", "--speculative-ngram", "7"])
try:
    @check("greedy: the same text, log-probabilities and top lists as without speculation")
    def _():
        a, b = completions(plain, temperature=0), completions(spec, temperature=0)
        same(a, b)
        assert any(len(set(t[0].split())) < len(t[0].split()) for t in a), "no repeated words: nothing to guess"

    @check("sampled with a seed: the same text as without speculation")
    def _():
        a, b = completions(plain, temperature=0.7, seed=5), completions(spec, temperature=0.7, seed=5)
        same(a, b)

    @check("streamed: the same pieces add up to the same text")
    def _():
        a, b = completions(plain, stream=True, temperature=0), completions(spec, stream=True, temperature=0)
        same(a, b)
        assert all(len(t[1]) == 48 for t in b), [len(t[1]) for t in b]  # a log-probability for every token

    @check("three requests at once: each the text it gets alone")
    def _():
        import threading
        alone = completions(plain, temperature=0)
        res = [None] * 3

        def one(i):
            st, _, j, data = spec.post("/v1/completions", {"model": "m", "prompt": PROMPTS[i], "max_tokens": 48,
                                                           "ignore_eos": True, "temperature": 0})
            res[i] = j["choices"][0]["text"] if st == 200 else data
        th = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        assert res == [a[0] for a in alone], (res, alone)

    @check("metrics: drafts proposed and confirmed with speculation, none without")
    def _():
        m = spec.metrics()
        drafts = sample_value(m, 'shardserve_spec_draft_tokens_total{model_name="m"}')
        confirmed = sample_value(m, 'shardserve_spec_accepted_tokens_total{model_name="m"}')
        assert 0 < confirmed < drafts, (confirmed, drafts)
        assert sample_value(plain.metrics(), 'shardserve_spec_draft_tokens_total{model_name="m"}') == 0
        assert "speculative decoding by prompt lookup, up to 7 draft tokens" in spec.log_text()
finally:
    stop_checked(plain, "plain server")
    stop_checked(spec, "speculating server")


@check("--speculative-ngram outside 0..32 and --speculative-max-batch under 1 are refused with exit code 2, naming them")
def _():
    for flag, bad in (("--speculative-ngram", "33"), ("--speculative-ngram", "-1"), ("--speculative-ngram", "x"),
                      ("--speculative-max-batch", "0")):
        r = subprocess.run([BINARY, "serve", "--model", MODEL, "--device", "cpu", flag, bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (flag, bad, r.returncode, r.stderr[-500:])
        assert flag[2:] in r.stderr, r.stderr[-500:]


@check("SHARDSERVE_SPECULATIVE_NGRAM and SHARDSERVE_SPECULATIVE_MAX_BATCH are the flags' twins")
def _():
    srv = Server(BINARY, MODEL, ["--served-model-name", "m"],
                 env={"SHARDSERVE_SPECULATIVE_NGRAM": "3", "SHARDSERVE_SPECULATIVE_MAX_BATCH": "2"})
    try:
        assert "speculative decoding by prompt lookup, up to 3 draft tokens a sequence while at most 2 run" in \
            srv.log_text(), srv.log_text()[-2000:]
    finally:
        stop_checked(srv, "env server")


finish("speculative decoding: ok")

#!/usr/bin/env python3
"""test_gen_defaults.py — the model's generation_config.json sets the sampling of the fields a request
leaves out (--generation-config auto), on the OpenAI and Triton routes; a request's own fields win;
--generation-config none keeps greedy. Runs on a copy of the e2e-llama3-tok fixture (files linked) with
its own generation_config.json.
Usage: test_gen_defaults.py BINARY FIXTURES_DIR"""
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check, finish, stop_checked  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
SRC = os.path.join(FIXTURES, "models", "e2e-llama3-tok")
GEN = {"bos_token_id": 128000, "eos_token_id": 128009, "do_sample": True, "temperature": 0.9, "top_p": 0.95,
       "top_k": 20}

model = tempfile.mkdtemp(prefix="shardserve-gen-")
for f in os.listdir(SRC):
    if f != "generation_config.json":
        os.symlink(os.path.join(SRC, f), os.path.join(model, f))
with open(os.path.join(model, "generation_config.json"), "w") as fh:
    json.dump(GEN, fh)

BASE = {"prompt": "The capital of France is", "max_tokens": 24, "ignore_eos": True, "seed": 7}


def completion(srv, **fields):
    body = dict(BASE, **fields)
    st, _, j, _ = srv.post("/v1/completions", body)
    assert st == 200, (st, j)
    return j["choices"][0]["text"]


def triton(srv, **params):
    body = {"text_input": BASE["prompt"], "parameters": dict({"max_tokens": 24, "random_seed": 7},
                                                              **params)}
    st, _, j, _ = srv.post("/v2/models/m/generate", body)
    assert st == 200, (st, j)
    return j["text_output"]


srv = Server(BINARY, model, ["--max-seq-len", "256", "--served-model-name", "m"])
try:
    @check("auto: a request without sampling fields samples as the model's generation_config says")
    def _():
        implicit = completion(srv)
        explicit = completion(srv, temperature=0.9, top_p=0.95, top_k=20)
        greedy = completion(srv, temperature=0)
        assert implicit == explicit, (implicit, explicit)
        assert implicit != greedy, "sampled at 0.9 over 24 tokens, yet the greedy text: the defaults did not apply"
        assert "temperature 0.9" in srv.log_text(), "the startup log does not state the defaults"

    @check("auto: the request's own fields win over the model's")
    def _():
        assert completion(srv, temperature=0) == completion(srv, temperature=0, top_p=0.5)
        assert completion(srv, temperature=0.9) == completion(srv, temperature=0.9, top_p=0.95, top_k=20)

    @check("auto: the Triton route takes the same defaults")
    def _():
        assert triton(srv) == triton(srv, temperature=0.9, top_p=0.95, top_k=20)
        assert triton(srv) != triton(srv, temperature=0)
finally:
    stop_checked(srv)

srv = Server(BINARY, model, ["--max-seq-len", "256", "--served-model-name", "m", "--generation-config", "none"])
try:
    @check("none: a request without sampling fields stays greedy")
    def _():
        assert completion(srv) == completion(srv, temperature=0)
        assert "--generation-config none: greedy" in srv.log_text()
finally:
    stop_checked(srv, "second server")
    shutil.rmtree(model, ignore_errors=True)

finish("all generation-config default checks passed")

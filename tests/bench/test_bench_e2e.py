#!/usr/bin/env python3
"""test_bench_e2e.py - runs the real `shardserve bench --json` against mock_openai_server.py and checks
the report's counts, tokens and error kinds exactly (never timings).

usage: test_bench_e2e.py SHARDSERVE_BINARY GROUP     (GROUP: ok | tokens | errors | flags | all)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_openai_server import MockServer  # noqa: E402

BIN = None
FAILS = []
TMP = None  # a directory of this run's own (main)


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, flush=True)


def bench(url, *args, env=None, expect_rc=None):
    cmd = [BIN, "bench", "--url", url, "--json", "--quiet"] + [str(a) for a in args]
    e = {k: v for k, v in os.environ.items() if not k.startswith("SHARDSERVE_")}
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=e)
    if expect_rc is not None and p.returncode != expect_rc:
        check(False, "%s: exit %d, wanted %d; stderr: %s" % (" ".join(cmd[1:]), p.returncode, expect_rc,
                                                             p.stderr.strip()[-500:]))
    if p.returncode == 2:
        return None, p
    try:
        return json.loads(p.stdout), p
    except ValueError:
        check(False, "%s: stdout is not one JSON object: %r / %r" % (" ".join(cmd[1:]), p.stdout[:300],
                                                                        p.stderr[-300:]))
        return None, p


def errors_only(rep, **want):
    """Every error count is 0 except those named."""
    kinds = ("http", "connect", "timeout", "bad_stream", "other")
    got = {k: rep["errors"][k] for k in kinds}
    exp = {k: want.get(k, 0) for k in kinds}
    check(got == exp, "error counts %s, wanted %s (first: %s)" % (got, exp, rep["errors"].get("first")))


def group_ok():
    srv = MockServer(mode="ok", vocab=(100, 200)).start()
    try:
        args = ["--model", "tiny", "--num-requests", 12, "--input-len-range", "3:9", "--output-len", 5,
                "--concurrency", 4, "--seed", 7, "--vocab-range", "100:200", "--warmup", 2]
        rep, _ = bench(srv.url, *args, expect_rc=0)
        reqs = srv.requests
        check(len(reqs) == 14, "mock saw %d requests, wanted 2 warm-up + 12" % len(reqs))
        measured = reqs[2:]  # the warm-up phase ends before the measured one starts
        check(rep["requests"] == {"total": 12, "ok": 12, "failed": 0}, "requests %s" % rep["requests"])
        errors_only(rep)
        check(rep["errors"]["http_status"] == {}, "http_status %s" % rep["errors"]["http_status"])
        check(rep["warmup"] == {"ok": 2, "failed": 0}, "warmup %s" % rep["warmup"])
        check(rep["tokens"]["output"] == 60, "output tokens %s, wanted 12*5" % rep["tokens"]["output"])
        check(rep["tokens"]["output_chunks"] == 60, "chunks %s" % rep["tokens"]["output_chunks"])
        check(rep["tokens"]["short_outputs"] == 0, "short outputs %s" % rep["tokens"]["short_outputs"])
        in_sent = sum(len(r["prompt"]) for r in measured)
        check(rep["tokens"]["input"] == in_sent, "input tokens %s, mock got %d" % (rep["tokens"]["input"], in_sent))
        check(all(3 <= len(r["prompt"]) <= 9 and r["max_tokens"] == 5 for r in measured), "lengths out of range")
        check(len({len(r["prompt"]) for r in measured}) > 1, "input lengths should vary over 3:9")
        check(rep["ttft_ms"]["n"] == 12 and rep["e2e_ms"]["n"] == 12, "ttft/e2e sample counts")
        check(rep["itl_ms"]["n"] == 12 * 4, "itl samples %s, wanted 12*4 gaps" % rep["itl_ms"]["n"])
        check(rep["tpot_ms"]["n"] == 12, "tpot samples %s" % rep["tpot_ms"]["n"])
        for m in ("ttft_ms", "itl_ms", "e2e_ms"):
            s = rep[m]
            check(0 <= s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], "%s not ordered: %s" % (m, s))
        check(rep["e2e_ms"]["min"] >= rep["ttft_ms"]["min"], "e2e below ttft")
        check(rep["throughput"]["output_tokens_per_s"] > 0 and rep["duration_s"] > 0, "throughput/duration")
        par = rep["parameters"]
        check(par["model"] == "tiny" and par["num_requests"] == 12 and par["input_len_min"] == 3 and
              par["input_len_max"] == 9 and par["concurrency"] == 4 and par["seed"] == 7 and
              par["vocab_lo"] == 100 and par["vocab_hi"] == 200 and par["warmup"] == 2, "parameters %s" % par)

        # --requests-out: a line for each measured request (not the warm-up), with its own counts.
        out = os.path.join(TMP, "requests.jsonl")
        rep, _ = bench(srv.url, *(args + ["--requests-out", out]), expect_rc=0)
        with open(out) as f:
            lines = [json.loads(x) for x in f]
        check(len(lines) == 12 and sorted(x["i"] for x in lines) == list(range(12)), "request lines %s" % lines)
        lens = sorted(len(r["prompt"]) for r in srv.requests[-12:])
        check(sorted(x["input_tokens"] for x in lines) == lens, "request lines' input tokens vs %s" % lens)
        check(all(x["output_tokens"] == 5 and x["error"] is None and 1 <= x["itl_max_after"] <= 4 and
                  0 <= x["ttft_ms"] <= x["e2e_ms"] and 0 <= x["itl_max_ms"] <= x["e2e_ms"] and x["start_s"] >= 0
                  for x in lines), "request lines' fields: %s" % lines[:2])

        # Same seed, same prompts (as a multiset: arrival order varies with concurrency); another seed differs.
        first = sorted(json.dumps(r) for r in measured)
        bench(srv.url, *args, expect_rc=0)
        again = sorted(json.dumps(r) for r in srv.requests[30:])
        check(first == again, "same seed gave different prompts")
        bench(srv.url, *(args[:-6] + ["--seed", 8] + args[-4:]), expect_rc=0)
        other = sorted(json.dumps(r) for r in srv.requests[44:])
        check(len(other) == 12 and first != other, "another seed gave the same prompts")

        # Poisson arrivals and no --model (asks /v1/models); a text prompt, with usage giving its tokens.
        rep, _ = bench(srv.url, "--num-requests", 20, "--request-rate", 500, "--input-len", 4, "--output-len", 3,
                       "--vocab-range", "100:200", expect_rc=0)
        check(rep["requests"]["ok"] == 20 and rep["tokens"]["output"] == 60 and rep["tokens"]["input"] == 80,
              "rate run %s %s" % (rep["requests"], rep["tokens"]))
        check(rep["parameters"]["model"] == "tiny" and rep["parameters"]["request_rate"] == 500, "model lookup")
        rep, _ = bench(srv.url, "--num-requests", 3, "--prompt", "one two three", "--output-len", 2,
                       "--concurrency", 1, expect_rc=0)
        check(rep["tokens"]["input"] == 9 and rep["tokens"]["output"] == 6, "text prompt tokens %s" % rep["tokens"])
        check(srv.requests[-1]["prompt"] == "one two three", "text prompt not sent as a string")
    finally:
        srv.stop()


def group_tokens():
    # Two tokens per chunk: usage.completion_tokens counts tokens, the chunk count does not.
    srv = MockServer(mode="ok", tokens_per_chunk=2).start()
    try:
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 6, "--input-len", 2, "--output-len", 5,
                       "--concurrency", 3, expect_rc=0)
        check(rep["tokens"]["output"] == 30 and rep["tokens"]["output_chunks"] == 18, "k=2 tokens %s" % rep["tokens"])
        check(rep["itl_ms"]["n"] == 6 * 2, "k=2 itl samples %s" % rep["itl_ms"]["n"])
    finally:
        srv.stop()
    # No usage chunk: tokens are counted by chunks, input by the planned prompt length.
    srv = MockServer(mode="nousage").start()
    try:
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 5, "--input-len-range", "2:4",
                       "--output-len-range", "3:6", "--seed", 3, expect_rc=0)
        reqs = srv.requests
        want_out = sum(r["max_tokens"] for r in reqs)
        want_in = sum(len(r["prompt"]) for r in reqs)
        check(rep["tokens"]["output"] == want_out, "nousage output %s, wanted %d" % (rep["tokens"]["output"], want_out))
        check(rep["tokens"]["input"] == want_in, "nousage input %s, wanted %d" % (rep["tokens"]["input"], want_in))
        check(all(3 <= r["max_tokens"] <= 6 for r in reqs), "output-len-range not honoured")
        check(rep["parameters"]["output_len_min"] == 3 and rep["parameters"]["output_len_max"] == 6, "params")
    finally:
        srv.stop()


def group_errors():
    srv = MockServer(mode="fail500").start()
    try:
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 7, "--input-len", 3, "--output-len", 2,
                       "--concurrency", 3, expect_rc=1)
        check(rep["requests"] == {"total": 7, "ok": 0, "failed": 7}, "500s: %s" % rep["requests"])
        errors_only(rep, http=7)
        check(rep["errors"]["http_status"] == {"500": 7}, "status table %s" % rep["errors"]["http_status"])
        check(rep["errors"]["first"]["http"].startswith("HTTP 500: ") and "mock failure" in rep["errors"]["first"]["http"],
              "first http error %r" % rep["errors"]["first"])
        check(rep["tokens"]["output"] == 0 and rep["ttft_ms"]["n"] == 0, "failed requests must not count tokens")
    finally:
        srv.stop()
    srv = MockServer(mode="mixed").start()
    try:
        out = os.path.join(TMP, "mixed.jsonl")
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 9, "--input-len", 3, "--output-len", 4,
                       "--concurrency", 2, "--requests-out", out, expect_rc=1)
        check(rep["requests"] == {"total": 9, "ok": 6, "failed": 3}, "mixed: %s" % rep["requests"])
        errors_only(rep, http=3)
        check(rep["tokens"]["output"] == 24 and rep["ttft_ms"]["n"] == 6, "mixed tokens %s" % rep["tokens"])
        with open(out) as f:
            lines = [json.loads(x) for x in f]
        bad = [x for x in lines if x["error"] is not None]
        check(len(lines) == 9 and len(bad) == 3 and all(x["error"] == "http" and "HTTP 500" in x["message"] and
                                                        x["output_tokens"] == 0 for x in bad),
              "mixed request lines: %s" % bad)
    finally:
        srv.stop()
    for mode in ("nodone", "badjson", "error_event"):
        srv = MockServer(mode=mode).start()
        try:
            rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 4, "--input-len", 3, "--output-len", 3,
                           expect_rc=1)
            check(rep["requests"]["failed"] == 4, "%s: %s" % (mode, rep["requests"]))
            errors_only(rep, bad_stream=4)
        finally:
            srv.stop()
    srv = MockServer(mode="slow").start()
    try:
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 2, "--input-len", 3, "--output-len", 2,
                       "--timeout", 0.3, expect_rc=1)
        errors_only(rep, timeout=2)
    finally:
        srv.stop()
    srv = MockServer(mode="ok", api_key="sekret").start()
    try:
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 2, "--input-len", 3, "--output-len", 2,
                       "--api-key", "sekret", expect_rc=0)
        check(rep["requests"]["ok"] == 2, "api key accepted")
        rep, _ = bench(srv.url, "--model", "tiny", "--num-requests", 2, "--input-len", 3, "--output-len", 2,
                       "--api-key", "wrong", expect_rc=1)
        check(rep["errors"]["http_status"] == {"401": 2}, "bad api key: %s" % rep["errors"])
        # The mock refuses the wrong model name with 400: the bench must report it, not hide it.
        rep, _ = bench(srv.url, "--model", "other", "--num-requests", 1, "--input-len", 3, "--output-len", 2,
                       "--api-key", "sekret", expect_rc=1)
        check(rep["errors"]["http_status"] == {"400": 1} and "model must be" in rep["errors"]["first"]["http"],
              "bad model: %s" % rep["errors"])
    finally:
        srv.stop()
    # Nothing listening: every request is a connect error.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rep, _ = bench("http://127.0.0.1:%d" % port, "--model", "tiny", "--num-requests", 3, "--input-len", 2,
                   expect_rc=1)
    errors_only(rep, connect=3)


def group_flags():
    srv = MockServer(mode="ok", vocab=(5, 9), temperature=0.5, ignore_eos=False).start()
    try:
        env = {"SHARDSERVE_NUM_REQUESTS": "3", "SHARDSERVE_VOCAB_RANGE": "5:9", "SHARDSERVE_BENCH_MODEL": "tiny",
               "SHARDSERVE_TEMPERATURE": "0.5", "SHARDSERVE_IGNORE_EOS": "false", "SHARDSERVE_OUTPUT_LEN": "2"}
        rep, _ = bench(srv.url, "--input-len", 2, env=env, expect_rc=0)
        check(rep["requests"] == {"total": 3, "ok": 3, "failed": 0}, "env twins: %s" % rep["requests"])
        # serve's SHARDSERVE_MODEL (a model folder) in the same environment is not bench's model name (helper-80:
        # every request asked for the path and got 404): the server's own model is used.
        env2 = dict(env, SHARDSERVE_MODEL="/models/llama-3-8b")
        del env2["SHARDSERVE_BENCH_MODEL"]
        rep, _ = bench(srv.url, "--input-len", 2, env=env2, expect_rc=0)
        check(rep["requests"] == {"total": 3, "ok": 3, "failed": 0}, "SHARDSERVE_MODEL ignored: %s" % rep["requests"])
        # A flag beats its environment twin.
        rep, _ = bench(srv.url, "--input-len", 2, "--num-requests", 1, env=env, expect_rc=0)
        check(rep["requests"]["total"] == 1, "flag over env")
        # --extra-body: its fields reach every request (the mock records them) and the report states them.
        extra = {"response_format": {"type": "json_object"}, "seed": 7}
        n_before = len(srv.requests)
        rep, _ = bench(srv.url, "--input-len", 2, "--num-requests", 2, "--extra-body", json.dumps(extra), env=env,
                       expect_rc=0)
        sent = srv.requests[n_before:]
        check(len(sent) == 2 and all(r.get("response_format") == extra["response_format"] and r.get("seed") == 7
                                     for r in sent), "extra body not sent: %s" % sent)
        check(rep["parameters"]["extra_body"] == extra, "report extra_body: %s" % rep["parameters"].get("extra_body"))
    finally:
        srv.stop()
    for bad in (["--input-len", 5, "--input-len-range", "1:2"], ["--vocab-range", "9:5"], ["--input-len-range", "x"],
                ["--num-requests", 0], ["--concurrency", -1], ["--request-rate", -2], ["--bogus", 1],
                ["--output-len-range", "5:1"], ["--timeout", "abc"], ["--extra-body", "[1]"],
                ["--extra-body", "{\"a\":"], ["--extra-body", "{\"stream_options\":{}}"]):
        _, p = bench("http://127.0.0.1:9", "--model", "tiny", *bad, expect_rc=2)
        check(p.stdout == "" and "shardserve bench:" in p.stderr or "unknown flag" in p.stderr,
              "usage error %s should explain itself: %r" % (bad, p.stderr))
    _, p = bench("http://127.0.0.1:9", "--model", "tiny", "--requests-out", os.path.join(TMP, "no", "such"),
                 expect_rc=2)
    check("--requests-out " + os.path.join(TMP, "no", "such") in p.stderr, "unwritable --requests-out: %r" % p.stderr)
    p = subprocess.run([BIN, "bench", "--help"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0 and "SHARDSERVE_REQUEST_RATE" in p.stdout, "--help lists env twins")
    # Text report (no --json): the headline figures are there.
    srv = MockServer(mode="ok").start()
    try:
        p = subprocess.run([BIN, "bench", "--url", srv.url, "--model", "tiny", "--num-requests", "2", "--input-len",
                            "2", "--output-len", "3", "--quiet"], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "text run exit %d" % p.returncode)
        for needle in ("requests ok        2", "output tokens      6", "output tokens/s", "TTFT", "ITL", "E2E"):
            check(needle in p.stdout, "text report lacks %r" % needle)
    finally:
        srv.stop()


def group_vocab():
    # The default id range (1000:20000) is narrowed to the vocab_size /v1/models states, whether the model is
    # looked up or given; an explicit --vocab-range is the user's and is sent as it is.
    srv = MockServer(mode="ok", vocab=(0, 50), vocab_size=50).start()
    try:
        for extra in ([], ["--model", "tiny"]):
            n0 = len(srv.requests)
            rep, _ = bench(srv.url, "--num-requests", 6, "--input-len", 8, "--output-len", 2, *extra, expect_rc=0)
            check(rep["requests"] == {"total": 6, "ok": 6, "failed": 0}, "narrowed range %s: %s" % (extra, rep["errors"]))
            par = rep["parameters"]
            check(par["vocab_lo"] == 12 and par["vocab_hi"] == 50, "narrowed range %s: %s" % (extra, par))
            ids = [t for r in srv.requests[n0:] for t in r["prompt"]]
            check(len(ids) == 48 and all(12 <= t < 50 for t in ids), "ids outside [12, 50): %s" % ids)
        rep, _ = bench(srv.url, "--num-requests", 2, "--input-len", 8, "--output-len", 2, "--vocab-range", "100:200",
                       expect_rc=1)
        check(rep["requests"]["failed"] == 2 and rep["parameters"]["vocab_hi"] == 200, "explicit range kept")
    finally:
        srv.stop()


GROUPS = {"ok": group_ok, "tokens": group_tokens, "errors": group_errors, "flags": group_flags,
          "vocab": group_vocab}


def main():
    global BIN
    if len(sys.argv) != 3 or (sys.argv[2] not in GROUPS and sys.argv[2] != "all"):
        print(__doc__, file=sys.stderr)
        return 2
    BIN = sys.argv[1]
    global TMP
    with tempfile.TemporaryDirectory() as TMP:
        for name, fn in GROUPS.items():
            if sys.argv[2] in (name, "all"):
                fn()
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""soak.py — a few thousand mixed good and bad requests against the real server (bounded in time),
from several threads, including client disconnects mid-stream and oversize bodies. Every answer must
have the expected status; afterwards the server is still ready, nothing is left running, and SIGTERM
gives exit code 0 (under the ASan build, LeakSanitizer turns any leak into a non-zero exit).
Usage: soak.py BINARY FIXTURES_DIR [MAX_REQUESTS] [MAX_SECONDS]
SOAK_SERVER_ARGS: more server flags, e.g. "--device cuda" on a GPU machine (scripts/gpu/session.sh soak).
The server plans steps ahead (--overlap on) even on the cpu, where AUTO would not."""
import json
import os
import random
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check_prometheus_text, sample_value  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
MAX_REQ = int(sys.argv[3]) if len(sys.argv) > 3 else 2500
MAX_SEC = float(sys.argv[4]) if len(sys.argv) > 4 else 45.0
NAME = "e2e-llama3-tok"
CTX = 128

srv = Server(BINARY, os.path.join(FIXTURES, "models", NAME),
             ["--max-seq-len", str(CTX), "--max-body-bytes", "16384", "--conn-timeout", "5", "--log-level", "warn",
              "--overlap", "on"] +  # on the cpu too: steps planned ahead meet disconnects, cancels and deadlines
             os.environ.get("SOAK_SERVER_ARGS", "").split())


def raw_disconnect(stream):
    s = socket.create_connection(("127.0.0.1", srv.port))
    body = json.dumps({"prompt": "Tell me", "max_tokens": 20, "ignore_eos": True, "stream": stream})
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    if random.random() < 0.5:
        s.settimeout(10)
        try:
            s.recv(200)
        except OSError:
            pass
    s.close()
    return None


C, CH, V2 = "/v1/completions", "/v1/chat/completions", "/v2/models/%s/generate" % NAME
CASES = [
    # (weight, method, path, body, expected statuses)
    (6, "POST", C, lambda: {"prompt": random.choice(["Hi", "The", "A b c"]), "max_tokens": random.randint(1, 3)}, {200}),
    (3, "POST", C, lambda: {"prompt": [1, 2, 3], "max_tokens": 2, "stream": True,
                             "stream_options": {"include_usage": True}}, {200}),
    (3, "POST", CH, lambda: {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}, {200}),
    (2, "POST", CH, lambda: {"messages": [{"role": "user", "content": "Yo"}], "max_tokens": 2, "stream": True,
                              "n": 2, "seed": 5, "temperature": 1}, {200}),
    (2, "POST", V2, lambda: {"text_input": "Hi", "max_tokens": 2, "return_log_probs": True}, {200}),
    (2, "POST", V2 + "_stream", lambda: {"text_input": "Hi", "max_tokens": 2, "stop_words": ["x"]}, {200}),
    (1, "POST", C, lambda: {"prompt": "Hi", "max_tokens": 2, "logprobs": 3}, {200}),
    (3, "POST", C, lambda: "{\"prompt\": [1,", {400}),
    (2, "POST", C, lambda: {"prompt": {"a": 1}}, {400}),
    (2, "POST", C, lambda: {"prompt": ""}, {400}),
    (2, "POST", C, lambda: {"prompt": "x", "max_tokens": 0}, {400}),
    (2, "POST", C, lambda: {"prompt": "x", "max_tokens": 10 ** 6}, {400}),
    (2, "POST", C, lambda: {"prompt": [5] * (CTX + 1)}, {400}),
    (1, "POST", C, lambda: {"prompt": "word " * (CTX + 1)}, {400}),
    (2, "POST", CH, lambda: {"messages": [{"role": 3}]}, {400}),
    (2, "POST", V2, lambda: {"text_input": 7}, {400}),
    (2, "POST", C, lambda: {"prompt": "x", "model": "other"}, {404}),
    (1, "POST", "/v2/models/other/generate", lambda: {"text_input": "x"}, {404}),
    (1, "GET", "/nothing", lambda: None, {404}),
    (1, "GET", C, lambda: None, {405}),
    (1, "POST", C, lambda: "{\"prompt\":\"" + "a" * 20000 + "\"}", {413}),
    (2, "POST", "/tokenize", lambda: {"prompt": "héllo wörld"}, {200}),
    (1, "POST", "/detokenize", lambda: {"tokens": [9906, 1917]}, {200}),
    (2, "GET", "/v2/health/ready", lambda: None, {200}),
    (1, "GET", "/v1/models", lambda: None, {200}),
    (2, "DISCONNECT", True, None, None),
    (1, "DISCONNECT", False, None, None),
]
WEIGHTED = [c for c in CASES for _ in range(c[0])]

lock = threading.Lock()
counts = {"done": 0, "bad": 0}
errors = []
t_end = time.time() + MAX_SEC


def worker(seed):
    rnd = random.Random(seed)
    while True:
        with lock:
            if counts["done"] >= MAX_REQ or time.time() > t_end or len(errors) > 5:
                return
            counts["done"] += 1
        _, method, path, body, want = rnd.choice(WEIGHTED)
        try:
            if method == "DISCONNECT":
                raw_disconnect(path)
                continue
            st, _, data = srv.request(method, path, body(), timeout=60)
            if st not in want:
                raise AssertionError("%s %s -> %d %r" % (method, path, st, data[:200]))
            if st == 200 and path.endswith("stream") or (st == 200 and b"data: " in data[:6]):
                assert data.rstrip().endswith(b"}") or data.rstrip().endswith(b"[DONE]"), data[-200:]
            elif st >= 400:
                j = json.loads(data) if data and data[:1] == b"{" else None
                if st != 413:
                    assert j and "error" in j, data[:200]
        except Exception as e:  # collect, stop early
            with lock:
                errors.append(repr(e))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.time() - t0
print("soak: %d requests in %.1f s, %d errors" % (counts["done"], elapsed, len(errors)))
for e in errors[:5]:
    print("  " + e)

ok = not errors
try:
    assert srv.request("GET", "/v2/health/ready")[0] == 200
    deadline = time.time() + 30
    while True:
        text = srv.metrics()
        running = sample_value(text, 'shardserve_requests_running{model_name="%s"}' % NAME)
        waiting = sample_value(text, 'shardserve_requests_waiting{model_name="%s"}' % NAME)
        if running == 0 and waiting == 0:
            break
        assert time.time() < deadline, "requests still running after the soak: %r %r" % (running, waiting)
        time.sleep(0.2)
    check_prometheus_text(text)
    print("soak: %d of %d steps planned ahead" % (
        sample_value(text, 'shardserve_steps_planned_ahead_total{model_name="%s"}' % NAME),
        sample_value(text, 'nv_inference_exec_count{model="%s",version="1"}' % NAME)))
    st, _, j, _ = srv.post(C, {"prompt": "Hi", "max_tokens": 2, "ignore_eos": True})
    assert st == 200 and j["usage"]["completion_tokens"] == 2, j
except AssertionError as e:
    print("FAIL after soak: %r" % (e,))
    ok = False
rc = srv.stop(timeout=90)
if rc != 0:
    print("FAIL: exit code %r\n%s" % (rc, srv.log_text()[-6000:]))
    ok = False
if counts["done"] < 200:
    print("FAIL: only %d requests done" % counts["done"])
    ok = False
sys.exit(0 if ok else 1)

#!/usr/bin/env python3
"""mock_openai_server.py - a tiny OpenAI-compatible streaming server (stdlib only) for testing
`shardserve bench`: GET /v1/models and a streaming POST /v1/completions that checks the request,
streams one chunk per token (or per k tokens) with small delays, a usage chunk and [DONE], and can
misbehave on purpose (500s, cut streams, malformed or error events, slowness).

Run alone:  python3 mock_openai_server.py --port 8123 --mode ok
Import:     srv = MockServer(mode="ok"); srv.start(); ... srv.port ... srv.stop()
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "fail500", "mixed", "nodone", "badjson", "error_event", "slow", "nousage")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked transfer encoding, as real servers do
    disable_nagle_algorithm = True  # small SSE writes must leave at once (else ~40 ms delayed-ACK stalls)

    def log_message(self, fmt, *args):  # quiet
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data):
        """Writes one HTTP chunk, split in two writes at an odd place so SSE events arrive in pieces."""
        if not data:
            return
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def _event(self, obj_or_raw):
        raw = obj_or_raw if isinstance(obj_or_raw, bytes) else json.dumps(obj_or_raw).encode()
        ev = b"data: " + raw + b"\n\n"
        cut = max(1, len(ev) // 3)
        self._chunk(ev[:cut])
        self._chunk(ev[cut:])

    def do_GET(self):
        if self.path == "/v1/models":
            card = {"id": self.server.cfg["model"], "object": "model"}
            if self.server.cfg["vocab_size"]:
                card["vocab_size"] = self.server.cfg["vocab_size"]
            others = [{"id": "other", "object": "model", "vocab_size": 7}]  # a bench given --model skips it
            self._json(200, {"object": "list", "data": ([card] + others) if self.server.cfg["vocab_size"] else [card]})
        else:
            self._json(404, {"error": {"message": "not found: " + self.path}})

    def _check(self, req):
        cfg = self.server.cfg
        if req.get("model") != cfg["model"]:
            return "model must be %r, got %r" % (cfg["model"], req.get("model"))
        if req.get("stream") is not True:
            return "stream must be true"
        if req.get("stream_options") != {"include_usage": True}:
            return "stream_options.include_usage must be true"
        mt = req.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            return "max_tokens must be a positive integer"
        if req.get("temperature") != cfg["temperature"]:
            return "temperature must be %r" % cfg["temperature"]
        if req.get("ignore_eos", False) is not cfg["ignore_eos"]:
            return "ignore_eos must be %r" % cfg["ignore_eos"]
        p = req.get("prompt")
        if isinstance(p, str):
            if not p:
                return "empty prompt"
        elif isinstance(p, list) and p:
            lo, hi = cfg["vocab"]
            for t in p:
                if not isinstance(t, int) or isinstance(t, bool) or not lo <= t < hi:
                    return "prompt id %r outside [%d, %d)" % (t, lo, hi)
        else:
            return "prompt must be a string or a non-empty list of ids"
        return None

    def do_POST(self):
        cfg = self.server.cfg
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path != "/v1/completions":
            return self._json(404, {"error": {"message": "not found: " + self.path}})
        if cfg["api_key"] and self.headers.get("Authorization") != "Bearer " + cfg["api_key"]:
            return self._json(401, {"error": {"message": "bad api key"}})
        try:
            req = json.loads(body)
        except ValueError:
            return self._json(400, {"error": {"message": "bad JSON"}})
        problem = self._check(req)
        if problem:
            return self._json(400, {"error": {"message": problem}})
        with self.server.lock:
            seq = len(self.server.requests)
            # prompt, max_tokens and any field beyond those every request carries (bench --extra-body)
            extra = {k: v for k, v in req.items() if k not in _STANDARD_FIELDS}
            self.server.requests.append(dict(extra, prompt=req["prompt"], max_tokens=req["max_tokens"]))
        mode = cfg["mode"]
        if mode == "fail500" or (mode == "mixed" and seq % 3 == 2):
            return self._json(500, {"error": {"message": "mock failure %d" % seq}})
        if mode == "slow":
            time.sleep(1.5)
        p = req["prompt"]
        prompt_tokens = len(p.split()) if isinstance(p, str) else len(p)
        k = cfg["tokens_per_chunk"]
        total = req["max_tokens"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        i = 0
        while sent < total:
            take = min(k, total - sent)
            sent += take
            fin = "length" if sent == total else None
            self._event({"id": "cmpl-%d" % seq, "object": "text_completion", "model": cfg["model"],
                         "choices": [{"index": 0, "text": " t" * take, "logprobs": None, "finish_reason": fin}],
                         "usage": None})
            i += 1
            if mode == "badjson" and i == 2:
                self._event(b"{\"choices\": [")
            if mode == "error_event" and i == 2:
                self._event({"error": {"message": "mock stream error", "code": 500}})
            time.sleep(cfg["delay"])
        if mode != "nousage":
            self._event({"id": "cmpl-%d" % seq, "object": "text_completion", "model": cfg["model"], "choices": [],
                         "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                                   "total_tokens": prompt_tokens + total}})
        if mode != "nodone":
            self._event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default listen backlog of 5 stalls a burst of concurrent connects

    def handle_error(self, request, client_address):
        # A client that gave up (timeout tests) makes our writes fail: expected, not worth a traceback.
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


_STANDARD_FIELDS = ("model", "prompt", "max_tokens", "temperature", "stream", "stream_options", "ignore_eos")


class MockServer:
    def __init__(self, mode="ok", model="tiny", tokens_per_chunk=1, delay=0.001, vocab=(0, 1 << 31),
                 api_key=None, temperature=0, ignore_eos=True, port=0, vocab_size=0):
        assert mode in MODES, mode
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.lock = threading.Lock()
        self.httpd.requests = []
        self.httpd.cfg = {"mode": mode, "model": model, "tokens_per_chunk": tokens_per_chunk, "delay": delay,
                          "vocab": vocab, "api_key": api_key, "temperature": temperature,
                          "ignore_eos": ignore_eos, "vocab_size": vocab_size}
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = None

    @property
    def requests(self):
        with self.httpd.lock:
            return list(self.httpd.requests)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--mode", choices=MODES, default="ok")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--delay", type=float, default=0.001)
    ap.add_argument("--api-key")
    a = ap.parse_args()
    srv = MockServer(mode=a.mode, model=a.model, tokens_per_chunk=a.tokens_per_chunk, delay=a.delay,
                     api_key=a.api_key, port=a.port)
    print("mock OpenAI server on", srv.url, "mode", a.mode, flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

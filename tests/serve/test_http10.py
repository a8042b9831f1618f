#!/usr/bin/env python3
"""test_http10.py — HTTP/1.0 and HTTP/1.1 framing of `shardserve serve` replies over raw sockets: streams
(OpenAI SSE, Triton generate_stream) to HTTP/1.0 clients, keep-alive or not, end at the connection's close
with every event; HTTP/1.1 streams stay chunked and keep-alive; whole replies carry a right Content-Length.
Usage: test_http10.py BINARY FIXTURES_DIR"""
import json
import os
import socket
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check, finish, stop_checked  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
MODEL_DIR = os.path.join(FIXTURES, "models", "e2e-llama3-tok")
NAME = "e2e-llama3-tok"
HANG_S = 120  # bounds a hang only (a healthy server answers in well under a second)


# A long idle timeout: a connection the server means to keep open is not closed by the idle timer while a
# check waits for the close that ends an HTTP/1.0 stream (the socket's HANG_S would fail the check first).
srv = Server(BINARY, MODEL_DIR, ["--max-seq-len", "256", "--conn-timeout", "3600"])

COMPLETION = {"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
CHAT = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 12, "temperature": 0, "ignore_eos": True}
TRITON = {"text_input": "The capital of France is", "max_tokens": 12, "parameters": {"temperature": 0}}
GENERATE_STREAM = "/v2/models/%s/generate_stream" % NAME


class Reply:
    def __init__(self, version, status, headers, head_raw):
        self.version, self.status, self.headers, self.head_raw = version, status, headers, head_raw
        self.body = b""

    def header(self, name):
        """All values of a header (case-insensitive name)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Conn:
    """One raw TCP connection; replies are read with the framing the headers announce."""

    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", srv.port))
        self.s.settimeout(HANG_S)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, method, path, version, body=None, connection=None):
        data = json.dumps(body).encode() if body is not None else b""
        head = "%s %s HTTP/%s\r\nHost: 127.0.0.1\r\n" % (method, path, version)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        if connection:
            head += "Connection: %s\r\n" % connection
        self.s.sendall(head.encode() + b"\r\n" + data)

    def _more(self, what):
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise AssertionError("no %s within %d s (the server neither sent more nor closed); so far: %r"
                                 % (what, HANG_S, self.buf[-300:]))
        self.buf += d
        return d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            assert self._more("reply header"), ("connection closed before the header ended", self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[0], int(lines[0].split(" ")[1])
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
        return Reply(version, status, headers, head)

    def read_exact(self, n):
        while len(self.buf) < n:
            assert self._more("body bytes"), ("connection closed %d bytes into a %d-byte body" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            assert self._more("chunk line"), ("connection closed inside a chunked body", self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.read_line().split(b";")[0], 16)
            if size == 0:
                while self.read_line() != b"":  # trailers, then the blank line
                    pass
                return body
            body += self.read_exact(size)
            assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"

    def read_to_close(self):
        """Everything up to the server's close; fails (after HANG_S) when the server keeps the connection."""
        while self._more("close of the connection"):
            pass
        out, self.buf = self.buf, b""
        return out


def exchange(c, method, path, version, body=None, connection=None):
    """Sends a request and reads its whole reply the way a client of that version would."""
    c.send(method, path, version, body, connection)
    r = c.read_head()
    te, cl = r.header("Transfer-Encoding"), r.header("Content-Length")
    if te:
        assert te == ["chunked"], r.head_raw
        r.body = c.read_chunked()
    elif cl:
        assert len(cl) == 1, ("several Content-Length headers", r.head_raw)
        r.body = c.read_exact(int(cl[0]))
    else:
        r.body = c.read_to_close()
    return r


def sse_events(body):
    """The data of each SSE event; the stream must consist of whole events only."""
    text = body.decode()
    assert text.endswith("\n\n"), ("stream does not end with a whole event", text[-200:])
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, ("not a single-line data event", block)
        events.append(block[6:])
    return events


def whole(path, body):
    """The reply of a plain (non-streamed) request, over HTTP/1.1 through the harness."""
    st, _, j, raw = srv.post(path, body)
    assert st == 200, (st, raw[:300])
    return j


WANT_COMPLETION = whole("/v1/completions", COMPLETION)["choices"][0]["text"]
WANT_CHAT = whole("/v1/chat/completions", CHAT)["choices"][0]["message"]["content"]
WANT_TRITON = whole("/v2/models/%s/generate" % NAME, TRITON)["text_output"]
assert WANT_COMPLETION and WANT_CHAT and WANT_TRITON, (WANT_COMPLETION, WANT_CHAT, WANT_TRITON)


def completion_text(events):
    assert events[-1] == "[DONE]", ("no data: [DONE] at the end", events[-3:])
    return "".join(ch["text"] for e in events[:-1] for ch in json.loads(e)["choices"])


def chat_text(events):
    assert events[-1] == "[DONE]", ("no data: [DONE] at the end", events[-3:])
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant", chunks[0]
    return "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])


def triton_text(events):
    assert "[DONE]" not in events, "Triton's generate_stream has no [DONE] event"
    return "".join(json.loads(e)["text_output"] for e in events)


STREAMS = [
    ("/v1/completions", dict(COMPLETION, stream=True), completion_text, WANT_COMPLETION),
    ("/v1/chat/completions", dict(CHAT, stream=True), chat_text, WANT_CHAT),
    (GENERATE_STREAM, TRITON, triton_text, WANT_TRITON),
]


def check_http10_stream(connection):
    for path, body, text_of, want in STREAMS:
        c = Conn()
        try:
            c.send("POST", path, "1.0", body, connection)
            r = c.read_head()
            where = (path, connection, r.head_raw)
            assert r.version == "HTTP/1.0" and r.status == 200, where
            # The bug: "Connection: keep-alive" and "Content-Length: 0", the events then read as garbage.
            assert r.header("Content-Length") == [], ("an HTTP/1.0 stream must not state a length", where)
            assert r.header("Transfer-Encoding") == [], ("HTTP/1.0 has no chunked encoding", where)
            assert [v.lower() for v in r.header("Connection")] == ["close"], where
            assert r.header("Content-Type") == ["text/event-stream"], where
            # The body runs to the close, which must come from the server once the stream is over (the
            # server's idle timeout is an hour, and the wait fails after HANG_S).
            r.body = c.read_to_close()
            events = sse_events(r.body)
            assert len(events) >= 2, (where, r.body[:300])
            got = text_of(events)
            assert got == want, (path, connection, "streamed text differs from the whole reply's", got, want)
        finally:
            c.close()


@check("HTTP/1.0 + Connection: keep-alive, streamed (completions, chat, generate_stream): no Content-Length, "
       "Connection: close, every SSE event and data: [DONE], then the server closes")
def _():
    check_http10_stream("keep-alive")


@check("HTTP/1.0 without keep-alive, streamed: the same, the body ending at the close")
def _():
    check_http10_stream(None)
    check_http10_stream("close")


@check("HTTP/1.1 streams stay chunked and keep-alive: a second request on the same connection is answered")
def _():
    for path, body, text_of, want in STREAMS:
        c = Conn()
        try:
            r = exchange(c, "POST", path, "1.1", body)
            where = (path, r.head_raw)
            assert r.version == "HTTP/1.1" and r.status == 200, where
            assert r.header("Transfer-Encoding") == ["chunked"] and r.header("Content-Length") == [], where
            assert "close" not in [v.lower() for v in r.header("Connection")], where
            assert text_of(sse_events(r.body)) == want, (path, r.body[-300:])
            r2 = exchange(c, "GET", "/health", "1.1")
            assert r2.status == 200, (path, "second request on the kept connection", r2.head_raw)
        finally:
            c.close()


@check("HTTP/1.0 whole replies (200, 400, empty 200, HEAD): body length == Content-Length; keep-alive kept")
def _():
    cases = [("POST", "/v1/completions", COMPLETION, 200), ("POST", "/v1/completions", {"prompt": 5}, 400),
             ("GET", "/v2/health/ready", None, 200), ("GET", "/v1/models", None, 200)]
    for method, path, body, status in cases:
        # Without keep-alive: a Content-Length even though the close would end the body, and the close.
        c = Conn()
        try:
            c.send(method, path, "1.0", body)
            r = c.read_head()
            where = (method, path, r.head_raw)
            assert r.version == "HTTP/1.0" and r.status == status, where
            cl = r.header("Content-Length")
            assert len(cl) == 1, ("exactly one Content-Length", where)
            r.body = c.read_to_close()
            assert len(r.body) == int(cl[0]), (where, len(r.body))
            if path == "/v1/completions" and status == 200:
                assert json.loads(r.body)["choices"][0]["text"] == WANT_COMPLETION, r.body
        finally:
            c.close()
        # Keep-alive: the stated length frames the body, and the connection takes the next request.
        c = Conn()
        try:
            r = exchange(c, method, path, "1.0", body, "keep-alive")
            where = (method, path, "keep-alive", r.head_raw)
            assert r.status == status and len(r.header("Content-Length")) == 1, where
            assert [v.lower() for v in r.header("Connection")] == ["keep-alive"], where
            assert not r.body or isinstance(json.loads(r.body), dict), (where, r.body[:200])
            r2 = exchange(c, "GET", "/health", "1.0", None, "keep-alive")
            assert r2.status == 200, ("second request on the kept HTTP/1.0 connection", r2.head_raw)
        finally:
            c.close()
    # HEAD: GET's length, no body (the next reply on the connection parses).
    c = Conn()
    try:
        c.send("HEAD", "/v1/models", "1.0", None, "keep-alive")
        r = c.read_head()
        assert r.status == 200 and int(r.header("Content-Length")[0]) > 10, r.head_raw
        r2 = exchange(c, "GET", "/health", "1.0", None, "keep-alive")
        assert r2.status == 200, r2.head_raw
    finally:
        c.close()


@check("the server still serves after the HTTP/1.0 streams")
def _():
    st, _, j, _ = srv.post("/v1/completions", COMPLETION)
    assert st == 200 and j["choices"][0]["text"] == WANT_COMPLETION, j


stop_checked(srv)
finish("all HTTP/1.0 framing checks passed")

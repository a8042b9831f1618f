#!/usr/bin/env python3
"""test_prompt_pool.py — request bodies are parsed and long prompts tokenized on the server's work pool, off its
event loop: a short request sent while a 6 MB prompt is being encoded, or a body of 2.7M token ids parsed, is
answered before it (on the loop it would wait for the encoding or the parse); the long prompt still gets its
exact error; with 64 MiB of long bodies there a long one is refused (429), a short or malformed one is not;
/tokenize and /detokenize run there too; a client that leaves while its prompt is encoded, and a
SIGTERM while prompts are there, are handled (the server answers, drains and exits 0; the ASan build checks the
memory); a chat request's messages are rendered through the template there.
Nothing waits a fixed time for the server: the pool is held (SS_TEST_POOL_HOLD) while requests are sent, and the
gauge shardserve_requests_tokenizing says when they have all arrived there.
Usage: test_prompt_pool.py BINARY FIXTURES_DIR"""
import contextlib
import json
import os
import random
import select
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check, finish, sample_value, stop_checked  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
MODEL_DIR = os.path.join(FIXTURES, "models", "e2e-llama3-tok")  # the Llama 3 tokenizer: ~0.5 s a MB here
HANG_S = 120  # bounds a hang only
# ~6 MB of made-up words (~1 s to encode here; the body limit is 8 MiB): a repeated sentence would hit the
# encoder's cache of words and take a fraction of that
_rng = random.Random(7)
LONG = " ".join("".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_rng.randint(2, 9)))
                for _ in range(1000000))

# While HOLD exists the server's pool starts no job (a test switch), so that bodies wait there for as long as a
# check needs them to, whatever the machine's load.
HOLD = os.path.join(tempfile.mkdtemp(prefix="shardserve-pool-"), "hold")
srv = Server(BINARY, MODEL_DIR, ["--max-seq-len", "256"], env={"SS_TEST_POOL_HOLD": HOLD})
TOKENIZING = 'shardserve_requests_tokenizing{model_name="e2e-llama3-tok"}'


@contextlib.contextmanager
def held():
    """Inside: the server's pool starts no job, so that what is sent stays there until the block ends."""
    open(HOLD, "w").close()
    try:
        yield
    finally:
        os.unlink(HOLD)


def wait_tokenizing(n):
    """Waits until n requests are on the pool: their bodies were read whole and handed to it (instead of a fixed
    sleep, too short on a loaded machine). Under held(), they stay there."""
    deadline = time.time() + HANG_S
    while True:
        got = sample_value(srv.metrics(), TOKENIZING)
        if got == n:
            return
        assert time.time() < deadline, "%d requests on the pool, not %d" % (got, n)
        time.sleep(0.02)


def wait_log(text):
    deadline = time.time() + HANG_S
    while text not in srv.log_text():
        assert time.time() < deadline, "no %r in the server's log" % text
        time.sleep(0.02)


def send_long(path="/v1/completions", body=None):
    """A connection whose whole long request has been sent."""
    data = body if isinstance(body, bytes) else json.dumps(body or {"prompt": LONG, "max_tokens": 4}).encode()
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.settimeout(HANG_S)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % (path.encode(), len(data)) + data)
    return s


def read_reply(s):
    """(status, parsed JSON body) of the one response on s (the server closes after it)."""
    raw = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        raw += d
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head, "no response"
    return int(head.split(b" ")[1]), json.loads(body)


def expect_too_long(st, j):
    msg = j["error"]["message"]
    assert st == 400 and "tokens, but the context length is 256" in msg, (st, j)
    return int(msg.split("the prompt has ")[1].split(" ")[0])


@check("a short request is answered while a long prompt is being tokenized; the long one gets its exact count")
def _():
    with held():
        s = send_long()
        wait_tokenizing(1)  # the server has the whole body; once released it encodes it (~1 s, longer under load)
    st, _, j, raw = srv.post("/v1/completions", {"prompt": "Hello", "max_tokens": 3})
    assert st == 200 and j["choices"][0]["text"], (st, raw[:300])
    readable, _, _ = select.select([s], [], [], 0)
    assert not readable, "the long prompt was answered before the short request: it was encoded on the event loop"
    n = expect_too_long(*read_reply(s))
    s.close()
    # The same text through POST /tokenize (the pool as well) counts the same tokens.
    st, _, j, raw = srv.post("/tokenize", {"prompt": LONG[:1100000]}, timeout=HANG_S)
    assert st == 400 and "longer than" in j["error"]["message"], (st, raw[:300])  # /tokenize's 1 MiB cap
    st, _, j, raw = srv.post("/tokenize", {"prompt": LONG[:500000]}, timeout=HANG_S)
    assert st == 200 and j["count"] == len(j["tokens"]) and j["tokens"][0] == 128000, (st, raw[:200])
    assert 100000 < j["count"] < n, (j["count"], n)
    # POST /detokenize runs there too: the ids give the text back (with the BOS the tokenizer added).
    st, _, d, raw = srv.post("/detokenize", {"tokens": j["tokens"]}, timeout=HANG_S)
    assert st == 200 and d["prompt"] == "<|begin_of_text|>" + LONG[:500000], (st, raw[:200])
    st, _, d, raw = srv.post("/detokenize", {"tokens": [1, 2, 10 ** 7]})
    assert st == 400 and d["error"]["param"] == "tokens", (st, raw[:300])


@check("a body of ~2.7M token ids is parsed there too (cJSON ~0.7 s here): a short request is answered meanwhile")
def _():
    ids = [1] * 2700000  # "1, " each: ~8.1 MB, under the 8 MiB body limit
    with held():
        s = send_long(body={"prompt": ids, "max_tokens": 4})
        wait_tokenizing(1)
    st, _, j, raw = srv.post("/v1/completions", {"prompt": "Hello", "max_tokens": 3})
    assert st == 200 and j["choices"][0]["text"], (st, raw[:300])
    readable, _, _ = select.select([s], [], [], 0)
    assert not readable, "the long body was answered before the short request: it was parsed on the event loop"
    st, j = read_reply(s)
    s.close()
    assert st == 400 and j["error"]["param"] == "prompt" and "has 2700000 tokens" in j["error"]["message"], (st, j)
    # Parse errors found there come back as before: malformed JSON, a model this server does not serve.
    st, _, raw = srv.request("POST", "/v1/completions", b'{"prompt": [1, 2,')
    assert st == 400 and "malformed JSON" in json.loads(raw)["error"]["message"], (st, raw[:300])
    st, _, j, raw = srv.post("/v1/completions", {"model": "nope", "prompt": [1, 2], "max_tokens": 1})
    assert st == 404 and j["error"]["param"] == "model", (st, raw[:300])
    st, _, j, raw = srv.post("/v1/completions", {"prompt": [128000, 9906], "max_tokens": 2})
    assert st == 200 and j["usage"]["prompt_tokens"] == 2, (st, raw[:300])


@check("with 64 MiB of long bodies waiting, a long one gets 429; a short or malformed one is still taken")
def _():
    # Bodies of exactly 8 MiB (the default --max-body-bytes): eight fill the pool's 64 MiB to the byte, so that a
    # short request is over it too (small ones may add 16 MiB more; that bound is not reached here). The pool is
    # held meanwhile: none of the eight can finish (and free its bytes) before the others arrive.
    empty = len(json.dumps({"prompt": "", "max_tokens": 4}))
    text = (LONG + " " + LONG)[:(8 << 20) - empty]
    with held():
        longs = [send_long(body={"prompt": text, "max_tokens": 4}) for _ in range(8)]
        wait_tokenizing(8)  # all eight read whole, before the next ones arrive
        for s in [send_long(body={"prompt": text, "max_tokens": 4}) for _ in range(2)]:  # refused at once
            st, j = read_reply(s)
            s.close()
            assert st == 429 and "busy" in j["error"]["message"], (st, j)
        # A malformed and a short body are taken into the held pool, not refused (429): their answers say so.
        bad = send_long(body=b'{"prompt": "Hello", "max_tokens": ')
        short = send_long(body={"prompt": "Hello", "max_tokens": 3})
        wait_tokenizing(10)
    st, j = read_reply(bad)
    bad.close()
    assert st == 400 and "malformed JSON" in j["error"]["message"], (st, j)
    st, j = read_reply(short)
    short.close()
    assert st == 200 and j["choices"][0]["text"], (st, j)
    for s in longs:
        expect_too_long(*read_reply(s))
        s.close()


@check("a chat request's messages are rendered and tokenized there too: a short request is answered meanwhile")
def _():
    with held():
        s = send_long("/v1/chat/completions", {"messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": LONG}], "max_tokens": 2})
        wait_tokenizing(1)
    st, _, j, raw = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}],
                                                       "max_tokens": 3})
    assert st == 200 and j["choices"][0]["message"]["content"], (st, raw[:300])
    readable, _, _ = select.select([s], [], [], 0)
    assert not readable, "the long chat request was answered before the short one: it was handled on the event loop"
    st, j = read_reply(s)
    s.close()
    assert j["error"]["param"] == "messages", j
    expect_too_long(st, j)
    # Exact: a chat request's count is its rendering's (the fixture's Llama 3 template, written out here).
    med = LONG[:500000].strip()  # the template trims each message's content
    st, j = read_reply(send_long("/v1/chat/completions", {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": med}], "max_tokens": 2}))
    n = expect_too_long(st, j)
    rendered = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n" + med +
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    st, _, t, raw = srv.post("/tokenize", {"prompt": rendered, "add_special_tokens": False}, timeout=HANG_S)
    assert st == 200 and t["count"] == n, (st, raw[:200], n)


def failures(reason):
    return sum(float(line.rsplit(" ", 1)[1]) for line in srv.metrics().splitlines()
               if line.startswith("nv_inference_request_failure{") and 'reason="%s"' % reason in line)


@check("a client that leaves while its prompt is tokenized does not disturb the others, and counts as cancelled")
def _():
    cancelled, rejected = failures("CANCELED"), failures("REJECTED")
    for _ in range(3):
        send_long().close()
    s = send_long("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}], "max_tokens": 2})
    st, j = read_reply(s)
    assert st == 400 and "tokens, but the context length is 256" in j["error"]["message"], (st, j)
    assert j["error"]["param"] == "messages", j
    st, _, j, raw = srv.post("/v1/completions", {"prompt": "Hello", "max_tokens": 3})
    assert st == 200 and j["choices"][0]["text"], (st, raw[:300])
    # The three that left are seen gone when the pool hands them back (not refused as too long once scheduled):
    # the chat request's 400 is the one rejection. The last of them may still be encoding on the other worker.
    deadline = time.time() + HANG_S
    while True:
        got = (failures("CANCELED") - cancelled, failures("REJECTED") - rejected)
        if sum(got) >= 4 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert got == (3, 1), got


@check("SIGTERM while prompts are on the pool: each is answered (a short one queued behind two long ones is "
       "drained, not refused), then the server exits 0")
def _():
    # The signal must come once the three bodies are read whole (a body still arriving is refused with 503 on a
    # SIGTERM); they are held on the pool until the server has taken the signal, then both workers encode the long
    # ones while the short one waits behind them.
    with held():
        longs = [send_long(), send_long()]
        short = send_long(body={"prompt": "Hello", "max_tokens": 3})
        wait_tokenizing(3)
        srv.proc.send_signal(15)
        wait_log("signal 15: stopping")
    st, j = read_reply(short)
    assert st == 200 and j["choices"][0]["text"], (st, j)
    for s in longs:
        expect_too_long(*read_reply(s))
        s.close()
    short.close()
    # It exits by itself once drained (stop_checked then reads the code): a second SIGTERM would kill it (-15) if it
    # came on the way out, after the server let go of its handler.
    srv.proc.wait(timeout=HANG_S)


stop_checked(srv)
os.rmdir(os.path.dirname(HOLD))
finish("all prompt-pool checks passed")

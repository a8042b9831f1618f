#!/usr/bin/env python3
# lpab.py — session.sh phase lpab: `fetch OUT.json` sends a fixed set of completion requests (logprobs lists,
# logit_bias, penalties; greedy and seeded) to the server on 127.0.0.1:8000 and saves the answers; `compare A B`
# reports where two saved sets differ (texts, tokens, log-probabilities, top lists).
import json, sys, urllib.request

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
           "1, 2, 3, 5, 8, 13,"]
BODIES = [
    {"logprobs": 5},
    {"logprobs": 1},
    {"logprobs": 3, "logit_bias": {"1000": 5, "2000": -100, "30000": 2.5}},
    {"logprobs": 2, "frequency_penalty": 0.8, "presence_penalty": 0.3},
    {"logprobs": 2, "frequency_penalty": 0.5, "logit_bias": {"13": -3}},
    {"logprobs": 4, "temperature": 0.8, "seed": 7},
    {"temperature": 0.8, "seed": 11, "frequency_penalty": 0.4},
]


def fetch(out):
    res = []
    for b in BODIES:
        for p in PROMPTS:
            body = {"model": "m", "prompt": p, "max_tokens": 32, "temperature": 0}
            body.update(b)
            req = urllib.request.Request("http://127.0.0.1:8000/v1/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            res.append({"body": body, "resp": json.loads(urllib.request.urlopen(req, timeout=60).read())})
    json.dump(res, open(out, "w"))
    print("fetched", len(res))


def compare(a_path, b_path):
    a, b = json.load(open(a_path)), json.load(open(b_path))
    worst_lp = 0.0
    same_text = same_ids = 0
    for x, y in zip(a, b):
        ca, cb = x["resp"]["choices"][0], y["resp"]["choices"][0]
        tag = json.dumps({k: v for k, v in x["body"].items() if k not in ("model", "max_tokens")})
        if ca["text"] == cb["text"]:
            same_text += 1
        else:
            print("TEXT differs:", tag, repr(ca["text"][:60]), "vs", repr(cb["text"][:60]))
        la, lb = ca.get("logprobs"), cb.get("logprobs")
        if not la or not lb:
            continue
        n = min(len(la["token_logprobs"]), len(lb["token_logprobs"]))
        for i in range(n):
            if la["tokens"][i] != lb["tokens"][i]:
                break
            worst_lp = max(worst_lp, abs(la["token_logprobs"][i] - lb["token_logprobs"][i]))
            ta, tb = la["top_logprobs"][i], lb["top_logprobs"][i]
            if list(ta.keys()) != list(tb.keys()):
                print("TOP ids differ:", tag, "token", i, list(ta.items())[:3], "vs", list(tb.items())[:3])
            else:
                same_ids += 1
                for k in ta:
                    worst_lp = max(worst_lp, abs(ta[k] - tb[k]))
    print("requests %d, same text %d, top lists equal at %d tokens, largest log-probability difference %.3g" %
          (len(a), same_text, same_ids, worst_lp))


if __name__ == "__main__":
    fetch(sys.argv[2]) if sys.argv[1] == "fetch" else compare(sys.argv[2], sys.argv[3])

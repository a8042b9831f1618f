#!/usr/bin/env python3
"""spec_check.py — speculative decoding through a served model.
run URL TEXT N MAX OUT.json [CHARS [CLIENTS [LOGPROBS]]]: greedy completions (max_tokens MAX, ignore_eos) of N passages
of the text file TEXT (CHARS characters each, default 1,200, from line starts chosen with a fixed seed), from CLIENTS
threads (default 1: one request at a time), with LOGPROBS top log-probabilities a token (default 0: none); prints the
tokens per second.
compare A.json B.json: how many completions are the same text, where the others part, and with log-probabilities how
far those of the common tokens differ and how close the first differing token's top two were in A."""
import json
import random
import sys
import threading
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {'Content-Type': 'application/json'})
    return json.load(urllib.request.urlopen(req, timeout=300))


def run(url, text_file, n, max_tokens, out, chars, clients, logprobs):
    text = open(text_file, encoding='utf-8').read()
    rnd = random.Random(1)
    model = json.load(urllib.request.urlopen(url + '/v1/models', timeout=30))['data'][0]['id']
    starts = [text.find('\n', rnd.randrange(0, len(text) - 4000)) + 1 for _ in range(n)]
    res = [None] * n

    def one(i):
        body = {'model': model, 'prompt': text[starts[i]:starts[i] + chars], 'max_tokens': max_tokens,
                'temperature': 0, 'ignore_eos': True}
        if logprobs:
            body['logprobs'] = logprobs
        t = time.time()
        r = post(url + '/v1/completions', body)
        c = r['choices'][0]
        res[i] = {'start': starts[i], 'text': c['text'], 'tokens': r['usage']['completion_tokens'],
                  's': time.time() - t, 'logprobs': c.get('logprobs')}

    t0 = time.time()
    for first in range(0, n, clients):
        th = [threading.Thread(target=one, args=(i,)) for i in range(first, min(n, first + clients))]
        for t in th:
            t.start()
        for t in th:
            t.join()
    json.dump(res, open(out, 'w'))
    tok = sum(x['tokens'] for x in res)
    sec = time.time() - t0
    print(f"{out}: {n} requests from {clients} client(s), {tok} tokens in {sec:.2f} s: {tok / sec:.1f} tok/s "
          f"(TTFT included)")


def compare(a, b):
    A, B = json.load(open(a)), json.load(open(b))
    same, parts, worst, gaps = 0, [], 0.0, []
    for x, y in zip(A, B):
        lx, ly = x.get('logprobs'), y.get('logprobs')
        if lx and ly:
            tx, ty = lx['tokens'], ly['tokens']
            d = 0
            while d < min(len(tx), len(ty)) and tx[d] == ty[d]:
                worst = max(worst, abs(lx['token_logprobs'][d] - ly['token_logprobs'][d]))
                d += 1
            if d < len(tx) and lx.get('top_logprobs'):
                top = sorted(lx['top_logprobs'][d].values(), reverse=True)
                if len(top) > 1:
                    gaps.append(top[0] - top[1])
        if x['text'] == y['text']:
            same += 1
            continue
        i = 0
        while i < min(len(x['text']), len(y['text'])) and x['text'][i] == y['text'][i]:
            i += 1
        parts.append(f"{i}/{len(x['text'])}")
    print(f"{b} against {a}: {same} of {len(A)} the same text; the others part at character {' '.join(parts) or '-'}")
    if gaps or worst:
        print(f"  common tokens' log-probabilities differ by at most {worst:.4f}; where the tokens part, A's top two "
              f"were {' '.join(f'{g:.4f}' for g in gaps) or '-'} apart")


if __name__ == '__main__':
    if sys.argv[1] == 'run':
        a = sys.argv
        run(a[2], a[3], int(a[4]), int(a[5]), a[6], int(a[7]) if len(a) > 7 else 1200, int(a[8]) if len(a) > 8 else 1,
            int(a[9]) if len(a) > 9 else 0)
    else:
        compare(sys.argv[2], sys.argv[3])

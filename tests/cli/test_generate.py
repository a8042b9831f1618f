#!/usr/bin/env python3
"""`shardserve generate` end to end: chat rendering + greedy text against the e2e golden, ids in/out
against the model goldens, and the exit codes / messages of bad input (DESIGN.md §2)."""
import json
import os
import subprocess
import time
import sys
import tempfile

BIN, FIX = sys.argv[1], sys.argv[2]
failures = 0
passes = 0


def run(args, **kw):
    return subprocess.run([BIN, "generate", "--quiet"] + args, capture_output=True, text=True, timeout=240, **kw)


def check(name, cond, detail=""):
    global failures, passes
    if cond:
        passes += 1
        print("ok  ", name)
    else:
        failures += 1
        print("FAIL", name, detail)


# 1. --chat on the e2e model: same rendered ids, same greedy ids and text as transformers.
g = json.load(open(os.path.join(FIX, "golden", "e2e-llama3-tok.json")))
model = os.path.join(FIX, "models", "e2e-llama3-tok")
for i, chat in enumerate(g["chat"]):
    case = next((c for c in g["cases"] if c["prompt_ids"] == chat["ids"]), None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(chat["messages"], f)
    r = run(["--model", model, "--chat", f.name, "--max-tokens", str(g["n_gen"]), "--ignore-eos", "--output", "json"])
    os.unlink(f.name)
    check("chat %d exit 0" % i, r.returncode == 0, r.stderr[-500:])
    if r.returncode != 0:
        continue
    out = json.loads(r.stdout)
    check("chat %d prompt ids" % i, out["prompt_ids"] == chat["ids"], (out["prompt_ids"], chat["ids"]))
    if case:
        check("chat %d greedy ids" % i, out["ids"] == case["greedy_ids"], (out["ids"], case["greedy_ids"]))
        check("chat %d greedy text" % i, out["text"] == case["greedy_text"], (out["text"], case["greedy_text"]))

# 2. ids in, ids out on every golden model (first case, tokens up to the first small margin).
for name in ["llama3-gqa", "llama2-mha", "mistral-tied-mqa", "qwen2-bias", "qwen3-qknorm"]:
    gd = json.load(open(os.path.join(FIX, "golden", name + ".json")))
    c = gd["cases"][1]
    n = next((k for k, m in enumerate(c["greedy_margins"]) if m < 1e-3), len(c["greedy_ids"]))
    r = run(["--model", os.path.join(FIX, "models", name), "--prompt-ids", ",".join(map(str, c["prompt_ids"])),
             "--max-tokens", str(max(n, 1)), "--ignore-eos", "--device", "cpu"])
    got = [int(x) for x in r.stdout.strip().split(",")] if r.returncode == 0 else None
    check("%s greedy %d tokens" % (name, n), got == c["greedy_ids"][:max(n, 1)], (got, c["greedy_ids"][:n], r.stderr[-300:]))

# 3. --logprobs: top-K per step, sorted, the greedy token first.
r = run(["--model", os.path.join(FIX, "models", "llama3-gqa"), "--prompt-ids", "71", "--max-tokens", "3",
         "--ignore-eos", "--logprobs", "4", "--output", "json"])
out = json.loads(r.stdout) if r.returncode == 0 else {}
lp = out.get("logprobs", [])
check("logprobs shape", len(lp) == 3 and all(len(s) == 4 for s in lp), r.stdout[-300:])
check("logprobs greedy first and sorted",
      all(s[0]["id"] == t and all(s[k]["logprob"] >= s[k + 1]["logprob"] for k in range(3))
          for s, t in zip(lp, out.get("ids", []))), lp)

# 3b. --quiet reaches the local ranks a sharded run starts (session 60: workers logged at info regardless)
r = run(["--model", model, "--prompt-ids", "1,2", "--max-tokens", "2", "--tp", "2"])
check("generate --tp 2 --quiet: no info line from any rank", r.returncode == 0 and r.stdout.strip() and
      " info " not in r.stderr, r.stderr[-500:])
r = subprocess.run([BIN, "worker", "--leader-addr", "127.0.0.1:1", "--rank", "1", "--world", "2", "--log-level",
                    "loud"], capture_output=True, text=True, timeout=60)
check("worker --log-level loud -> exit 2 naming it", r.returncode == 2 and "'loud'" in r.stderr, r.stderr)
r = subprocess.run([BIN, "serve", "--model", model, "--device", "cpu", "--port", "0", "--log-level", "loud"],
                   capture_output=True, text=True, timeout=60)  # (it was taken as info)
check("serve --log-level loud -> exit 2 naming it", r.returncode == 2 and "'loud'" in r.stderr, r.stderr)
# helper-80's findings: bounds before casts, an empty key, negative lengths, a flag over a bad twin, stdin caps
cases = [
    ([BIN, "worker", "--leader-addr", "127.0.0.1:1", "--rank", "1", "--world", "4294967298"], {}, 2, "--world in 2..4096"),
    ([BIN, "worker", "--leader-addr", "127.0.0.1:1", "--rank", "1", "--world", "2", "--join-timeout",
      "9223372036854775807"], {}, 2, "--join-timeout must be in 1..86400"),
    ([BIN, "generate", "--model", model, "--prompt-ids", "1", "--tp", "4294967296", "--pp", "4294967296"], {}, 2,
     "tp x pp <= 64"),
    ([BIN, "generate", "--model", model, "--prompt-ids", "1", "--threads", "5000"], {}, 2, "--threads must be in"),
    ([BIN, "serve", "--model", model, "--device", "cpu", "--port", "0", "--api-key", ""], {}, 2, "--api-key is empty"),
    ([BIN, "bench", "--url", "http://127.0.0.1:1", "--num-requests", "1", "--input-len", "-7"], {}, 2,
     "--input-len -7: must be at least 1"),
    ([BIN, "generate", "--quiet", "--model", model, "--prompt-ids", "1", "--max-tokens", "2"],
     {"SHARDSERVE_MAX_TOKENS": "abc"}, 0, ""),
    # a value from an environment twin that is out of range: the message names the variable (it named only the flag)
    ([BIN, "serve", "--model", model, "--device", "cpu"], {"SHARDSERVE_PORT": "99999"}, 2,
     "--port must be in [0, 65535] (got 99999) (from the environment: SHARDSERVE_PORT=99999)"),
    ([BIN, "serve", "--model", model, "--device", "cpu", "--port", "99999"], {"SHARDSERVE_PORT": "99999"}, 2,
     "(got 99999)\n"),
    ([BIN, "prepare", "--model", model], {"SHARDSERVE_LOCK_STALE_S": "1"}, 2,
     "(from the environment: SHARDSERVE_LOCK_STALE_S=1)"),
    ([BIN, "worker", "--leader-addr", "127.0.0.1:1", "--rank", "1", "--world", "2"], {"SHARDSERVE_JOIN_TIMEOUT": "0"},
     2, "(from the environment: SHARDSERVE_JOIN_TIMEOUT=0)"),
    ([BIN, "generate", "--model", model, "--prompt-ids", "1"], {"SHARDSERVE_MAX_TOKENS": "0"}, 2,
     "--max-tokens must be in 1..1048576 (got 0) (from the environment: SHARDSERVE_MAX_TOKENS=0)"),
    ([BIN, "bench", "--url", "http://127.0.0.1:1", "--num-requests", "1"], {"SHARDSERVE_INPUT_LEN": "-7"}, 2,
     "(from the environment: SHARDSERVE_INPUT_LEN=-7)"),
]
for argv, env, code, says in cases:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ, **env))
    check("%s %s -> exit %d" % (" ".join(argv[1:]), env or "", code), r.returncode == code and says in r.stderr,
          r.stderr[-400:])
r = subprocess.run([BIN, "chat-template", "--model", model], input=" " * (70 << 20), capture_output=True, text=True,
                   timeout=120)
check("chat-template with 70 MB on stdin -> exit 3 naming the cap, as its other bad messages (was 5, out of memory)",
      r.returncode == 3 and "stdin: messages larger than" in r.stderr, r.stderr[-400:])

# 4. the bundled demo model (no --model): transformers' greedy continuations, from text prompts.
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
dg = json.load(open(os.path.join(root, "models", "shardserve-demo", "golden.json")))
for p in dg["prompts"]:
    r = run(["--prompt", p["text"], "--max-tokens", str(len(p["greedy_ids"])), "--ignore-eos", "--output", "json",
             "--device", "cpu"])
    out = json.loads(r.stdout) if r.returncode == 0 else {}
    n = next((k for k, m in enumerate(p["greedy_margins"]) if m < 1e-3), len(p["greedy_ids"]))
    check("demo %r prompt ids" % p["text"][:20], out.get("prompt_ids") == p["prompt_ids"], (out, r.stderr[-300:]))
    check("demo %r greedy (%d tokens)" % (p["text"][:20], n), out.get("ids", [])[:n] == p["greedy_ids"][:n],
          (out.get("ids"), p["greedy_ids"]))

# 4b. JSON mode on the demo model: greedy, the output an object following the schema, or cut by --max-tokens.
schema_file = os.path.join(tempfile.mkdtemp(), "person.json")
with open(schema_file, "w") as f:
    json.dump({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name", "age"]}, f)
r = run(["--prompt", "And God said", "--max-tokens", "60", "--json-schema", schema_file, "--output", "json"])
out = json.loads(r.stdout) if r.returncode == 0 else {}
obj = json.loads(out["text"]) if out.get("finish_reason") == "stop" else None
check("generate --json-schema: an object with name (string) and age (integer), finish stop",
      isinstance(obj, dict) and list(obj) == ["name", "age"] and isinstance(obj["name"], str) and
      type(obj["age"]) is int, (r.stdout[-500:], r.stderr[-500:]))
r = run(["--prompt", "And God said", "--max-tokens", "8", "--json-mode", "--output", "json"])
out = json.loads(r.stdout) if r.returncode == 0 else {}
check("generate --json-mode cut by --max-tokens: finish length, text begins the object",
      out.get("finish_reason") == "length" and out.get("text", "").lstrip()[:1] == "{", r.stdout[-500:])
with open(schema_file, "w") as f:
    f.write('{"type": "object", "properties": {"a": {"type": "string", "pattern": "x+"}}}')
r = run(["--prompt", "x", "--json-schema", schema_file])
check("generate --json-schema with an unsupported keyword -> exit 2 naming it",
      r.returncode == 2 and "properties.a.pattern" in r.stderr, r.stderr)

# 5. bad input: exit codes and messages that name the thing.
bad = tempfile.mkdtemp()
r = run(["--model", bad, "--prompt-ids", "1"])
check("missing config -> exit 3 naming config.json", r.returncode == 3 and "config.json" in r.stderr, r.stderr)
r = run(["--model", model, "--prompt-ids", "1", "--tpp", "2"])
check("unknown flag -> exit 2 naming it", r.returncode == 2 and "--tpp" in r.stderr, r.stderr)
r = run(["--model", os.path.join(FIX, "models", "llama3-gqa"), "--prompt-ids", "1,99999"])
check("out-of-vocab id -> exit 2", r.returncode == 2 and "99999" in r.stderr, r.stderr)
r = run(["--model", os.path.join(FIX, "models", "llama3-gqa"), "--prompt-ids", "1", "--tp", "3"])
check("tp 3 on 8 heads refused with the reason", r.returncode == 2 and "heads" in r.stderr, r.stderr)
# node numbers (session 60: --node-rank -3 made this process the leader; LWS_GROUP_SIZE=0 said "outside 0..-1")
for extra in (["--nnodes", "2", "--node-rank", "-3"], ["--nnodes", "0"]):
    r = run(["--model", model, "--prompt-ids", "1", "--tp", "2", "--leader-addr", "127.0.0.1:1"] + extra)
    check("%s -> exit 2 naming the flags" % extra, r.returncode == 2 and "--nnodes" in r.stderr, r.stderr)
for size, index in (("0", "0"), ("2", "-1")):
    r = run(["--model", model, "--prompt-ids", "1", "--tp", "2"],
            env=dict(os.environ, LWS_LEADER_ADDRESS="127.0.0.1", LWS_GROUP_SIZE=size, LWS_WORKER_INDEX=index))
    check("LWS_GROUP_SIZE=%s LWS_WORKER_INDEX=%s -> exit 2 naming both" % (size, index),
          r.returncode == 2 and "LWS_GROUP_SIZE '%s' / LWS_WORKER_INDEX '%s'" % (size, index) in r.stderr, r.stderr)
# a leader address without a port (session 60: "host:" was port 0, and the rendezvous listened on any port)
for addr in ("127.0.0.1:", "127.0.0.1:0", "127.0.0.1: 29500"):
    r = run(["--model", model, "--prompt-ids", "1", "--tp", "2", "--leader-addr", addr, "--nnodes", "2"])
    check("--leader-addr '%s' -> exit 2 naming it" % addr,
          r.returncode == 2 and "'%s'" % addr in r.stderr and "1..65535" in r.stderr, r.stderr)
# a node other than the leader's gives up after --join-timeout, and so do the local ranks it starts (helper-85: they
# had the worker command's 600 s while the node waited 3600 s, fixed, for a leader preparing a 70B engine)
p = subprocess.Popen([BIN, "generate", "--model", model, "--prompt-ids", "1", "--tp", "4", "--nnodes", "2",
                      "--node-rank", "1", "--leader-addr", "127.0.0.1:1", "--join-timeout", "4"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(1.5)
kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
cmdlines = [open("/proc/%s/cmdline" % k, "rb").read().split(b"\0") for k in kids if os.path.exists("/proc/%s" % k)]
t0 = time.time()
out, err = p.communicate(timeout=60)
check("a worker node with --join-timeout 4: its local rank gets it too", len(cmdlines) == 1 and
      b"--join-timeout" in cmdlines[0] and cmdlines[0][cmdlines[0].index(b"--join-timeout") + 1] == b"4", cmdlines)
check("... and the node exits 4 once it passes, naming the leader", p.returncode == 4 and "127.0.0.1:1" in err and
      time.time() - t0 < 30, (p.returncode, err[-300:]))
for t in ("0", "86401"):
    r = run(["--model", model, "--prompt-ids", "1", "--join-timeout", t])
    check("--join-timeout %s -> exit 2 naming it" % t, r.returncode == 2 and "--join-timeout" in r.stderr, r.stderr)
for t in ("0", "4294970"):  # (session 60: 0 became 60 s, and 4294970 s overflowed to 2.7 s)
    r = run(["--model", model, "--prompt-ids", "1", "--tp", "2", "--comm-timeout", t])
    check("--comm-timeout %s -> exit 2 naming it" % t, r.returncode == 2 and "--comm-timeout" in r.stderr, r.stderr)
r = run(["--model", os.path.join(FIX, "models", "llama3-gqa"), "--prompt", "hi"])
check("--prompt without tokenizer.json -> exit 3", r.returncode == 3 and "tokenizer.json" in r.stderr, r.stderr)
# a model path that is a file, a tokenizer.json that is a folder: bad model input, 3 (helper-80: exit 1)
r = run(["--model", os.path.join(model, "config.json"), "--prompt", "hi"])
check("--model naming a file -> exit 3 naming it", r.returncode == 3 and "config.json" in r.stderr, r.stderr)
odd = tempfile.mkdtemp()
for f in ("config.json", "model.safetensors", "generation_config.json"):
    if os.path.exists(os.path.join(model, f)):
        os.symlink(os.path.join(model, f), os.path.join(odd, f))
os.mkdir(os.path.join(odd, "tokenizer.json"))
r = run(["--model", odd, "--prompt", "hi"])
check("tokenizer.json that is a folder -> exit 3 naming it", r.returncode == 3 and "tokenizer.json" in r.stderr,
      r.stderr)
# sampling values the HTTP API refuses are refused here too (helper-80: nan ran greedy, min-p 5 and a top-k past
# 2^32 were taken)
for extra in (["--temperature", "nan"], ["--temperature", "101"], ["--min-p", "5"], ["--top-p", "inf"],
              ["--top-k", "4294967297"], ["--top-k", "-2"]):
    r = run(["--model", model, "--prompt-ids", "1"] + extra)
    check("%s -> exit 2 naming it" % extra, r.returncode == 2 and extra[0] in r.stderr, r.stderr)
with open(os.path.join(bad, "chat.json"), "w") as f:
    f.write('{"messages": 3}')
r = run(["--model", model, "--chat", os.path.join(bad, "chat.json")])
check("--chat file that is not a message list -> exit 2 naming the file",
      r.returncode == 2 and "chat.json" in r.stderr and "expected a JSON array" in r.stderr, r.stderr)
r = run(["--model", model, "--prompt-ids", "1", "--bogus"])
check("unknown flag message names the command once and its help",
      "shardserve generate: unknown flag '--bogus' (see shardserve generate --help)" in r.stderr, r.stderr)
r = run(["--model", model, "--prompt-ids", "1", "--tp", "0"])
check("--tp 0 -> exit 2 (0 is no layout; leaving --tp out means the engine's)", r.returncode == 2, r.stderr)
r = run(["--model", model, "--prompt", "-h", "--max-tokens", "2", "--output", "json"])
check("a flag's value '-h' is a value, not a request for help", r.returncode == 0 and '"ids"' in r.stdout,
      (r.stdout[-300:], r.stderr[-300:]))
r = subprocess.run([BIN, "serve", "--engine", bad], capture_output=True, text=True, timeout=30)
check("serve --engine on a folder without manifest.json -> exit 3 naming it",
      r.returncode == 3 and "no manifest.json" in r.stderr and bad in r.stderr, r.stderr)
r = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=30)
check("serve --help lists value kinds and defaults", r.returncode == 0 and "--port N" in r.stdout and
      "[default: 8000]" in r.stdout and "--no-prefix-cache " in r.stdout, r.stdout[-800:])
r = subprocess.run([BIN, "serve", "--overlap", "maybe"], capture_output=True, text=True, timeout=30)
check("serve --overlap takes auto, on or off -> exit 2 naming the value",
      r.returncode == 2 and "--overlap must be auto, on or off" in r.stderr and "maybe" in r.stderr, r.stderr)

print("%d passed, %d failed" % (passes, failures))
sys.exit(1 if failures else 0)

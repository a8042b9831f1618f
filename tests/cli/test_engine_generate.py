#!/usr/bin/env python3
"""Prepared engines serve the same tokens as the raw checkpoint: for each fixture model and (tp, pp),
`prepare` into a scratch cache, then `generate --model <engine>` with the same split must give the
golden greedy ids. A damaged rank file is refused at load, naming the file; without --tp/--pp an engine runs
the layout it was prepared for."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

BIN, FIX = sys.argv[1], sys.argv[2]
passes = failures = 0


def check(name, cond, detail=""):
    global passes, failures
    if cond:
        passes += 1
        print("ok  ", name)
    else:
        failures += 1
        print("FAIL", name, str(detail)[-1500:])


cache = tempfile.mkdtemp(prefix="ss-engine-gen-")
try:
    def valid(cfg, tp, pp):
        kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
        return (cfg["num_attention_heads"] % tp == 0 and (kv % tp == 0 or tp % kv == 0) and
                cfg["intermediate_size"] % tp == 0 and pp <= cfg["num_hidden_layers"])

    # every (tp, pp) with tp * pp <= 4 that the model's shapes allow, as the sharding tests
    all_splits = [(1, 1), (2, 1), (4, 1), (1, 2), (1, 3), (1, 4), (2, 2), (3, 1)]
    for name in ["llama3-gqa", "llama2-mha", "mistral-tied-mqa", "qwen2-bias", "qwen3-qknorm"]:
        model = os.path.join(FIX, "models", name)
        cfg = json.load(open(os.path.join(model, "config.json")))
        splits = [(tp, pp) for tp, pp in all_splits if valid(cfg, tp, pp)]
        g = json.load(open(os.path.join(FIX, "golden", name + ".json")))
        c = g["cases"][1]
        n = next((k for k, m in enumerate(c["greedy_margins"]) if m < 1e-3), len(c["greedy_ids"]))
        for tp, pp in splits:
            p = subprocess.run([BIN, "prepare", "--model", model, "--tp", str(tp), "--pp", str(pp), "--cache", cache,
                                "--quiet"], capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                check("%s tp%d pp%d prepare" % (name, tp, pp), False, p.stderr)
                continue
            engine = p.stdout.strip().splitlines()[-1]
            # Pipeline stages decode one token through decode_layers; SS_PERSIST=0 keeps them op by op, the
            # path a backend that refuses decode_layers falls back to.
            for persist in ([None, "0"] if pp > 1 else [None]):
                env = dict(os.environ)
                if persist is not None:
                    env["SS_PERSIST"] = persist
                r = subprocess.run([BIN, "generate", "--quiet", "--model", engine, "--tp", str(tp), "--pp", str(pp),
                                    "--device", "cpu", "--threads", "1", "--prompt-ids",
                                    ",".join(map(str, c["prompt_ids"])), "--max-tokens", str(n), "--ignore-eos"],
                                   capture_output=True, text=True, timeout=120, env=env)
                got = [int(x) for x in r.stdout.strip().split(",")] if r.returncode == 0 else r.stderr
                check("%s tp%d pp%d from engine%s" % (name, tp, pp, " (SS_PERSIST=0)" if persist else ""),
                      got == c["greedy_ids"][:n], got)
    # A flipped byte in a rank's tensor data: loading must fail and name the file.
    p = subprocess.run([BIN, "prepare", "--model", os.path.join(FIX, "models", "llama3-gqa"), "--tp", "2", "--cache",
                        cache, "--quiet"], capture_output=True, text=True, timeout=120)
    engine = p.stdout.strip().splitlines()[-1]
    bad = tempfile.mkdtemp(prefix="ss-engine-bad-")
    shutil.rmtree(bad)
    shutil.copytree(engine, bad)
    rank1 = os.path.join(bad, "rank-00001.safetensors")
    os.chmod(rank1, 0o644)
    with open(rank1, "r+b") as f:
        f.truncate(os.path.getsize(rank1) - 100)
    r = subprocess.run([BIN, "generate", "--quiet", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids", "1",
                        "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("truncated rank file refused naming it", r.returncode != 0 and "rank-00001.safetensors" in r.stderr,
          r.stderr)
    # One flipped byte in a rank file's tensor data, its size unchanged: the quick digest read beside the load
    # refuses it (exit 3, the file named); sizes alone let it load and serve garbage.
    shutil.copyfile(os.path.join(engine, "rank-00001.safetensors"), rank1)
    with open(rank1, "r+b") as f:
        f.seek(os.path.getsize(rank1) - 1000)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    r = subprocess.run([BIN, "generate", "--quiet", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids", "1",
                        "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("a flipped byte in a rank file refused at load, naming it", r.returncode == 3 and
          "rank-00001.safetensors" in r.stderr and "damaged engine file" in r.stderr and "xxh3-128:" in r.stderr,
          (r.returncode, r.stderr))
    shutil.copyfile(os.path.join(engine, "rank-00001.safetensors"), rank1)
    # Damage in the header (the JSON no longer parses, or names another tensor): the loader's own error would be a
    # format error; the digest, read when the header fails, says it is damage.
    for at, what in ((9, "header JSON"), (20, "header (byte 20)")):
        with open(rank1, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x01]))
        r = subprocess.run([BIN, "generate", "--quiet", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids",
                            "1", "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
        check("a flipped byte in a rank file's %s: refused as damage" % what, r.returncode == 3 and
              "rank-00001.safetensors" in r.stderr and "damaged engine file" in r.stderr, (r.returncode, r.stderr))
        shutil.copyfile(os.path.join(engine, "rank-00001.safetensors"), rank1)
    # The engine's config.json edited in place, its size unchanged: its sha256 is checked at load (the old check of
    # sizes let it change the model's shape or its output).
    cfg_path = os.path.join(bad, "config.json")
    os.chmod(cfg_path, 0o644)
    text = open(cfg_path).read()
    edited = text.replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": 1e-04')
    assert edited != text and len(edited) == len(text), "fixture config has no rms_norm_eps of 1e-05"
    open(cfg_path, "w").write(edited)
    r = subprocess.run([BIN, "generate", "--quiet", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids", "1",
                        "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("an edited config.json in an engine refused at load", r.returncode == 3 and "config.json" in r.stderr and
          "damaged engine file" in r.stderr, (r.returncode, r.stderr))
    open(cfg_path, "w").write(text)
    # An engine built before the quick digests (no "quick_digest" in its manifest) still loads, with a warning.
    man_path = os.path.join(bad, "manifest.json")
    os.chmod(man_path, 0o644)
    man = json.load(open(man_path))
    assert all("quick_digest" in f for f in man["ranks"]), man["ranks"]
    for f in man["ranks"]:
        del f["quick_digest"]
    json.dump(man, open(man_path, "w"))
    r = subprocess.run([BIN, "generate", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids", "1",
                        "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("an engine without quick digests loads, with a warning", r.returncode == 0 and
          "has no quick digest" in r.stderr, (r.returncode, r.stderr))
    # ... but a manifest with digests for some rank files only is refused (no builder writes one)
    man["ranks"][0]["quick_digest"] = json.load(open(os.path.join(engine, "manifest.json")))["ranks"][0]["quick_digest"]
    json.dump(man, open(man_path, "w"))
    r = subprocess.run([BIN, "generate", "--quiet", "--model", bad, "--tp", "2", "--device", "cpu", "--prompt-ids", "1",
                        "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("a manifest with quick digests for some rank files only is refused", r.returncode == 3 and
          "is given for 1 of the 2 rank files" in r.stderr, (r.returncode, r.stderr))
    r = subprocess.run([BIN, "generate", "--quiet", "--model", engine, "--tp", "1", "--device", "cpu", "--prompt-ids",
                        "1", "--max-tokens", "1"], capture_output=True, text=True, timeout=120)
    check("engine for tp 2 refused at tp 1, with the hint", r.returncode == 3 and "tp 2" in r.stderr and
          "leave --tp and --pp out" in r.stderr, r.stderr)
    # --tp / --pp left out: the engine's own layout (tp 2 here), the same tokens as the raw checkpoint at tp 2
    g = json.load(open(os.path.join(FIX, "golden", "llama3-gqa.json")))
    c = g["cases"][1]
    n = next((k for k, m in enumerate(c["greedy_margins"]) if m < 1e-3), len(c["greedy_ids"]))
    r = subprocess.run([BIN, "generate", "--quiet", "--model", engine, "--device", "cpu", "--threads", "1",
                        "--prompt-ids", ",".join(map(str, c["prompt_ids"])), "--max-tokens", str(n), "--ignore-eos"],
                       capture_output=True, text=True, timeout=120)
    got = [int(x) for x in r.stdout.strip().split(",")] if r.returncode == 0 else r.stderr
    check("engine's own layout when --tp/--pp are left out", got == c["greedy_ids"][:n], got)
    shutil.rmtree(bad, ignore_errors=True)
finally:
    shutil.rmtree(cache, ignore_errors=True)
print("%d passed, %d failed" % (passes, failures))
sys.exit(1 if failures else 0)

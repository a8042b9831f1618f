#!/usr/bin/env python3
"""Trains shardserve's bundled demo model: a byte-level BPE tokenizer and a small LlamaForCausalLM
on the public-domain corpus made by prepare_corpus.sh, then writes a golden file of greedy
continuations computed by transformers on the saved bf16 weights (reloaded in float32 on CPU).

One command, seeded, time-boxed, offline (no hub access):
  PYTHONUNBUFFERED=1 python3 tools/demo-model/train.py --corpus tools/demo-model/.corpus --minutes 4 --out $OUT

Writes exactly these files, flat, into --out: model.safetensors config.json generation_config.json
tokenizer.json tokenizer_config.json golden.json train_log.txt. The last line printed starts with
"SUMMARY". Nothing here needs torch at import time, so test_corpus.py can check the plain parts.
"""

import argparse
import json
import math
import os
import platform
import random
import sys
import time

# Never reach for the network (the GPU machine has none): set before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

# ---------------------------------------------------------------------------------------------
# The recipe (everything that decides what the shipped files contain)

SEED = 1234
VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BOS, EOS, PAD = SPECIAL_TOKENS[BOS_ID], SPECIAL_TOKENS[EOS_ID], SPECIAL_TOKENS[PAD_ID]

# The same pre-tokenizer split as Llama 3's tokenizer.json (so a runtime that reads Llama 3
# tokenizers reads this one), followed by byte-level mapping without a prefix space.
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Basic Jinja only (one loop, one if, string concatenation): corpus.py's chat documents are this
# rendering without the leading BOS.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
                 "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

MODEL = {
    "hidden_size": 384,
    "intermediate_size": 576,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
# bf16 weights must stay within this: the issue allows 20 MB, but the GPU machine hands back
# files of at most 16 MiB each, so the model is sized (7.9M parameters, 15.8 MB) to come back whole.
MAX_MODEL_BYTES = 16_000_000

SEQ_LEN = 256
BATCH = 64
PEAK_LR = 2e-3
MIN_LR_FRAC = 0.1
WARMUP_STEPS = 200
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
N_EVALS = 12  # held-out evaluations during training; the best weights are kept

GEN_TOKENS = 24
GOLDEN_PROMPTS = [
    "In the beginning God created",
    "And it came to pass, when",
    "Blessed are the",
    "A hacker is",
]
GOLDEN_CHAT = [{"role": "user", "content": "What is a cynic?"}]
TOKENIZER_CASES = [
    "Hello world",
    "In the beginning God created the heaven and the earth.",
    "  two leading spaces, trailing  ",
    "Numbers 12345 and 3:16; tabs\tand\nnew lines\r\n",
    "Unicode: café, naïve, “quotes” — dash, 東京, emoji 🙂",
    "<|user|>\nspecial tokens in text<|eos|>",
    "don't I'LL we've",
]

OUT_FILES = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
             "tokenizer_config.json", "golden.json", "train_log.txt"]


def param_count(vocab, m):
    """Parameters of a LlamaForCausalLM with tied embeddings (checked against torch in train)."""
    h, i, n = m["hidden_size"], m["intermediate_size"], m["num_hidden_layers"]
    kv = m["num_key_value_heads"] * (h // m["num_attention_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    lm_head = 0 if m["tie_word_embeddings"] else vocab * h
    return vocab * h + n * per_layer + h + lm_head


def load_docs(path):
    """Documents of a corpus file: separated by blank lines (see corpus.py)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d.strip("\n") for d in text.split("\n\n") if d.strip()]


def tokenizer_config():
    """tokenizer_config.json: the fast tokenizer class, BOS/EOS, the chat template."""
    added = {}
    for i, t in enumerate(SPECIAL_TOKENS):
        added[str(i)] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": True}
    return {
        "added_tokens_decoder": added,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL["max_position_embeddings"],
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


def lr_at(step, progress):
    """Linear warm-up over WARMUP_STEPS, then cosine from PEAK_LR to MIN_LR_FRAC * PEAK_LR as
    progress (0..1, the fraction of the time or step budget used) goes on."""
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    p = min(max(progress, 0.0), 1.0)
    lo = PEAK_LR * MIN_LR_FRAC
    return lo + (PEAK_LR - lo) * 0.5 * (1.0 + math.cos(math.pi * p))


def render_chat(messages, add_generation_prompt=True):
    """The chat template rendered with jinja2 (what transformers' apply_chat_template does)."""
    import jinja2
    # transformers compiles chat templates with trim_blocks and lstrip_blocks.
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                 bos_token=BOS, eos_token=EOS)


def resolve_out(arg_out, env):
    if arg_out:
        return arg_out
    if env.get("OUT"):
        return os.path.join(env["OUT"], "demo-model")
    return None


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Train the shardserve demo model (see README.md).")
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".corpus"),
                    help="folder with train.txt and valid.txt (from prepare_corpus.sh)")
    ap.add_argument("--out", default=None, help="output folder (default: $OUT/demo-model)")
    ap.add_argument("--minutes", type=float, default=4.0, help="time box of the training loop")
    ap.add_argument("--steps", type=int, default=0,
                    help="train exactly this many steps instead of the time box (to reproduce a run)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (falls back if it fails)")
    ap.add_argument("--max-docs", type=int, default=0, help="use only the first N train documents (smoke tests)")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Everything below needs torch / tokenizers / transformers (the GPU machine has them)


class Log:
    """Prints a line (flushed) and appends it to train_log.txt."""

    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8", buffering=1)
        self.t0 = time.time()

    def __call__(self, msg):
        line = "[%7.1fs] %s" % (time.time() - self.t0, msg)
        print(line, flush=True)
        self.f.write(line + "\n")

    def close(self):
        self.f.close()


def train_tokenizer(docs, log):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t = time.time()
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    tok.post_processor = processors.TemplateProcessing(
        single="%s $A" % BOS, pair="%s $A %s $B:1" % (BOS, BOS), special_tokens=[(BOS, BOS_ID)])
    for i, s in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(s) != i:
            raise RuntimeError("special token %s has id %s, expected %d" % (s, tok.token_to_id(s), i))
    log("tokenizer: %d tokens trained in %.1fs" % (tok.get_vocab_size(), time.time() - t))
    return tok


def encode_stream(tok, docs):
    """All documents as one token stream: <|bos|> doc <|eos|> <|bos|> doc <|eos|> ..."""
    out = []
    for enc in tok.encode_batch(docs, add_special_tokens=True):
        ids = enc.ids
        out.extend(ids)
        if not ids or ids[-1] != EOS_ID:
            out.append(EOS_ID)
    return out


def build_model(torch, vocab, log):
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = {k: v for k, v in MODEL.items() if k != "rope_theta"}
    cfg = LlamaConfig(vocab_size=vocab, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=None,
                      hidden_act="silu", attention_bias=False, mlp_bias=False, attention_dropout=0.0,
                      initializer_range=0.02, use_cache=False, **kw)
    # transformers 5 keeps RoPE settings in rope_parameters; 4.x in rope_theta.
    if isinstance(getattr(cfg, "rope_parameters", None), dict):
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": MODEL["rope_theta"]}
    else:
        cfg.rope_theta = MODEL["rope_theta"]
    model = LlamaForCausalLM(cfg)
    if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        model.tie_weights()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    n = sum(p.numel() for p in model.parameters())
    log("model: %d parameters (formula %d), tied embeddings %s, bf16 size %.2f MB"
        % (n, param_count(vocab, MODEL), tied, 2 * n / 1e6))
    if not tied:
        raise RuntimeError("embeddings are not tied; the recipe needs tie_word_embeddings")
    if 2 * n > MAX_MODEL_BYTES:
        raise RuntimeError("model would be %d bytes in bf16, over %d" % (2 * n, MAX_MODEL_BYTES))
    return model


def windows(torch, stream, starts, length):
    """[len(starts), length+1] token windows; position 0 is forced to <|bos|> (as at inference,
    where every prompt starts with it)."""
    idx = starts[:, None] + torch.arange(length + 1, device=stream.device)[None, :]
    w = stream[idx]
    x = w[:, :-1].clone()
    x[:, 0] = BOS_ID
    return x, w[:, 1:]


def evaluate(torch, F, model, stream, device, autocast):
    """Mean next-token loss over the held-out stream in consecutive SEQ_LEN windows (every
    token after the first is predicted once). Returns (mean_nats, n_tokens)."""
    model.eval()
    n = stream.numel()
    total, count = 0.0, 0
    with torch.no_grad():
        starts = torch.arange(0, max(n - 1 - SEQ_LEN, 0) + 1, SEQ_LEN, device=device)
        starts = starts[starts + SEQ_LEN + 1 <= n]
        for i in range(0, starts.numel(), 64):
            x, y = windows(torch, stream, starts[i:i + 64], SEQ_LEN)
            with autocast():
                logits = model(input_ids=x, use_cache=False).logits
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
        done = int(starts[-1].item()) + SEQ_LEN if starts.numel() else 0
        rest = n - 1 - done
        if rest > 0:  # the tail that does not fill a whole window
            x, y = windows(torch, stream, torch.tensor([done], device=device), rest)
            with autocast():
                logits = model(input_ids=x, use_cache=False).logits
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    model.train()
    return total / max(count, 1), count


def train(args, log):
    import torch
    import torch.nn.functional as F

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name(0) if cuda else "cpu (%s)" % platform.processor()
    if not cuda:
        log("WARNING: no CUDA device; training on the CPU (only sensible for a smoke test)")
    else:
        torch.cuda.manual_seed_all(args.seed)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log("device: %s; torch %s" % (card, torch.__version__))

    train_docs = load_docs(os.path.join(args.corpus, "train.txt"))
    valid_docs = load_docs(os.path.join(args.corpus, "valid.txt"))
    if args.max_docs > 0:
        train_docs = train_docs[:args.max_docs]
    if not train_docs or not valid_docs:
        raise RuntimeError("empty corpus in %s: run prepare_corpus.sh first" % args.corpus)
    valid_bytes = sum(len(d.encode("utf-8")) for d in valid_docs)
    log("corpus: %d train documents (%.1f MB), %d valid documents (%.2f MB)"
        % (len(train_docs), sum(len(d.encode("utf-8")) for d in train_docs) / 1e6, len(valid_docs),
           valid_bytes / 1e6))

    tok = train_tokenizer(train_docs, log)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(), f, indent=2, ensure_ascii=False)
        f.write("\n")

    t = time.time()
    train_ids = encode_stream(tok, train_docs)
    valid_ids = encode_stream(tok, valid_docs)
    log("tokens: %d train, %d valid (%.2f bytes/token), encoded in %.1fs"
        % (len(train_ids), len(valid_ids), valid_bytes / max(len(valid_ids), 1), time.time() - t))
    if len(train_ids) < 4 * (SEQ_LEN + 1):
        raise RuntimeError("too little training text: %d tokens" % len(train_ids))
    train_stream = torch.tensor(train_ids, dtype=torch.long, device=device)
    valid_stream = torch.tensor(valid_ids, dtype=torch.long, device=device)
    del train_ids, valid_ids

    vocab = tok.get_vocab_size()
    model = build_model(torch, vocab, log).to(device)
    model.train()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8, fused=cuda)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda)

    fwd = model
    if args.compile:
        try:
            fwd = torch.compile(model)
            log("torch.compile: on")
        except Exception as e:  # compile is an optimisation only
            log("torch.compile failed (%s); running eagerly" % e)
            fwd = model

    gen = torch.Generator()
    gen.manual_seed(args.seed)
    budget_s = args.minutes * 60.0
    total_steps = args.steps
    eval_points = [(k + 1) / N_EVALS for k in range(N_EVALS)]
    next_eval = 0
    best = (float("inf"), -1)
    best_state = None
    history = []
    step, tokens = 0, 0
    loss_acc = torch.zeros((), device=device)
    loss_n = 0
    log("training: batch %d x %d tokens, peak lr %g, %s"
        % (BATCH, SEQ_LEN, PEAK_LR, ("%d steps" % total_steps) if total_steps else ("%.1f minutes" % args.minutes)))
    t_start = time.time()
    last_log = t_start
    compiled_ok = True
    while True:
        elapsed = time.time() - t_start
        progress = step / total_steps if total_steps else elapsed / budget_s
        if progress >= 1.0:
            break
        lr = lr_at(step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, train_stream.numel() - SEQ_LEN - 1, (BATCH,), generator=gen).to(device)
        x, y = windows(torch, train_stream, starts, SEQ_LEN)
        with autocast():
            try:
                logits = fwd(input_ids=x, use_cache=False).logits
            except Exception as e:
                if fwd is model or not compiled_ok:
                    raise
                log("compiled model failed (%s); running eagerly" % e)
                compiled_ok, fwd = False, model
                logits = fwd(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_acc += loss.detach()
        loss_n += 1
        step += 1
        tokens += x.numel()
        now = time.time()
        if now - last_log >= 10.0 or step == 1:
            l = (loss_acc / loss_n).item()
            log("step %6d  loss %.4f  lr %.2e  %.0f tok/s  %.0fs"
                % (step, l, lr, tokens / max(now - t_start, 1e-9), now - t_start))
            loss_acc.zero_()
            loss_n = 0
            last_log = now
        p_now = step / total_steps if total_steps else (time.time() - t_start) / budget_s
        if next_eval < N_EVALS and p_now >= eval_points[next_eval]:
            while next_eval < N_EVALS and p_now >= eval_points[next_eval]:
                next_eval += 1
            vl, _ = evaluate(torch, F, model, valid_stream, device, autocast)
            history.append({"step": step, "valid_loss": vl, "seconds": round(time.time() - t_start, 1)})
            mark = ""
            if vl < best[0]:
                best = (vl, step)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                mark = "  (best)"
            log("eval at step %d: valid loss %.4f, perplexity %.2f%s" % (step, vl, math.exp(vl), mark))
    train_s = time.time() - t_start
    if cuda:
        torch.cuda.synchronize()
    vl, _ = evaluate(torch, F, model, valid_stream, device, autocast)
    if vl < best[0]:
        best = (vl, step)
        best_state = None  # the current weights are the best
    if best_state is not None:
        model.load_state_dict(best_state)
        log("kept the weights of step %d (valid loss %.4f; last step %d had %.4f)" % (best[1], best[0], step, vl))
    # The reported number is measured on the weights that are shipped (rounded to bf16), in
    # float32 compute without TF32.
    model.to(torch.bfloat16).float()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    final_loss, n_valid = evaluate(torch, F, model, valid_stream, device, lambda: torch.autocast(
        device_type=device.type, enabled=False))
    ppl = math.exp(final_loss)
    bpb = final_loss * n_valid / math.log(2) / max(valid_bytes, 1)
    log("held-out: loss %.4f nats/token, perplexity %.2f, %.3f bits/byte over %d tokens"
        % (final_loss, ppl, bpb, n_valid))
    info = {"steps": step, "kept_step": best[1], "tokens": tokens, "seconds": round(train_s, 1),
            "card": card, "seed": args.seed, "batch": BATCH, "seq_len": SEQ_LEN, "peak_lr": PEAK_LR,
            "minutes": args.minutes, "fixed_steps": args.steps, "compiled": bool(args.compile and compiled_ok),
            "train_tokens": int(train_stream.numel()), "valid_tokens": int(valid_stream.numel()),
            "evals": history}
    return tok, model, {"valid_loss": final_loss, "perplexity": ppl, "bits_per_byte": bpb,
                        "valid_tokens_predicted": n_valid}, info


def save_model(torch, model, out, log):
    """save_pretrained in bf16, then make config.json readable in the classic Hub layout too
    (rope_theta at the top, torch_dtype) and write generation_config.json."""
    model = model.to("cpu").to(torch.bfloat16)
    model.config.use_cache = True
    model.save_pretrained(out)
    path = os.path.join(out, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    rp = cfg.get("rope_parameters")
    theta = rp.get("rope_theta") if isinstance(rp, dict) else cfg.get("rope_theta")
    if theta is None or float(theta) != MODEL["rope_theta"]:
        raise RuntimeError("config.json has rope theta %r, expected %r" % (theta, MODEL["rope_theta"]))
    cfg["rope_theta"] = MODEL["rope_theta"]
    cfg.setdefault("rope_scaling", None)
    cfg["torch_dtype"] = "bfloat16"
    cfg["bos_token_id"], cfg["eos_token_id"] = BOS_ID, EOS_ID
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    import transformers
    gen = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "transformers_version": transformers.__version__}
    with open(os.path.join(out, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    from safetensors import safe_open
    st = os.path.join(out, "model.safetensors")
    if not os.path.exists(st):
        raise RuntimeError("save_pretrained wrote no model.safetensors (files: %s)" % sorted(os.listdir(out)))
    dtypes = set()
    with safe_open(st, framework="pt") as f:
        names = list(f.keys())
        for k in names:
            dtypes.add(str(f.get_slice(k).get_dtype()))
    size = os.path.getsize(st)
    log("saved model.safetensors: %d bytes, %d tensors, dtypes %s, lm_head tensor %s"
        % (size, len(names), sorted(dtypes), "present" if "lm_head.weight" in names else "absent (tied)"))
    if size > MAX_MODEL_BYTES:
        log("WARNING: model.safetensors is %d bytes, over the %d-byte budget" % (size, MAX_MODEL_BYTES))
    return size


def greedy_manual(torch, model, ids, n):
    """Reference greedy decoding with full forward passes (no cache): ids, margins, first logits."""
    seq = list(ids)
    out, margins, first = [], [], None
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
            if first is None:
                first = logits.tolist()
            top = torch.topk(logits, 2)
            nxt = int(top.indices[0])
            margins.append(float(top.values[0] - top.values[1]))
            out.append(nxt)
            seq.append(nxt)
            if nxt == EOS_ID:
                break
    return out, margins, first


def reference(torch, out, tok_raw, log):
    """Reloads the saved folder in float32 on the CPU and computes the golden outputs."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    try:
        model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, local_files_only=True,
                                                 attn_implementation="eager")
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32, local_files_only=True,
                                                 attn_implementation="eager")
    model = model.float().to("cpu").eval()
    theta = getattr(model.config, "rope_theta", None)
    rp = getattr(model.config, "rope_parameters", None)
    if isinstance(rp, dict):
        theta = rp.get("rope_theta", theta)
    log("reloaded: dtype %s, rope theta %s, attention %s"
        % (next(model.parameters()).dtype, theta, getattr(model.config, "_attn_implementation", "?")))
    if theta is None or float(theta) != MODEL["rope_theta"]:
        raise RuntimeError("reloaded config has rope theta %r, expected %r" % (theta, MODEL["rope_theta"]))

    hf_tok = None
    try:
        hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
        log("AutoTokenizer: %s" % type(hf_tok).__name__)
    except Exception as e:
        log("WARNING: AutoTokenizer could not load the folder: %s" % e)

    def gen(ids):
        manual, margins, first = greedy_manual(torch, model, ids, GEN_TOKENS)
        ids_hf = None
        try:
            with torch.no_grad():
                res = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     do_sample=False, max_new_tokens=GEN_TOKENS, pad_token_id=EOS_ID,
                                     eos_token_id=EOS_ID, return_dict_in_generate=True)
            ids_hf = res.sequences[0, len(ids):].tolist()
        except Exception as e:
            log("WARNING: model.generate failed (%s); using the plain greedy loop" % e)
        if ids_hf is not None and ids_hf != manual:
            log("WARNING: generate() %s differs from the plain greedy loop %s" % (ids_hf, manual))
        return (ids_hf if ids_hf is not None else manual), manual, margins, first

    prompts = []
    for text in GOLDEN_PROMPTS:
        ids = tok_raw.encode(text).ids
        if hf_tok is not None:
            hf_ids = hf_tok(text)["input_ids"]
            if list(hf_ids) != ids:
                log("WARNING: AutoTokenizer ids %s differ from tokenizers ids %s" % (hf_ids, ids))
        greedy, manual, margins, first = gen(ids)
        text_out = tok_raw.decode(greedy, skip_special_tokens=False)
        prompts.append({"text": text, "prompt_ids": ids, "greedy_ids": greedy, "greedy_text": text_out,
                        "greedy_margins": margins, "manual_greedy_ids": manual, "last_logits": first})
        log("golden: %r -> %r" % (text, text_out))

    rendered = render_chat(GOLDEN_CHAT)
    if hf_tok is not None:
        try:
            r2 = hf_tok.apply_chat_template(GOLDEN_CHAT, tokenize=False, add_generation_prompt=True)
            if r2 != rendered:
                log("WARNING: apply_chat_template gave %r, jinja2 gave %r" % (r2, rendered))
        except Exception as e:
            log("WARNING: apply_chat_template failed: %s" % e)
    chat_ids = tok_raw.encode(rendered, add_special_tokens=False).ids
    greedy, manual, margins, first = gen(chat_ids)
    chat = {"messages": GOLDEN_CHAT, "rendered": rendered, "prompt_ids": chat_ids, "greedy_ids": greedy,
            "greedy_text": tok_raw.decode(greedy, skip_special_tokens=False), "greedy_margins": margins,
            "manual_greedy_ids": manual}
    log("golden chat: %r -> %r" % (rendered, chat["greedy_text"]))

    cases = []
    for text in TOKENIZER_CASES:
        ids = tok_raw.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "ids_with_special": tok_raw.encode(text).ids,
                      "decoded": tok_raw.decode(ids, skip_special_tokens=False)})
    return prompts, chat, cases


def versions():
    out = {"python": platform.python_version()}
    for name in ["torch", "transformers", "tokenizers", "safetensors", "jinja2", "numpy"]:
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = None
    try:
        import torch
        out["cuda"] = torch.version.cuda
    except Exception:
        pass
    return out


def main(argv=None):
    args = parse_args(argv)
    args.out = resolve_out(args.out, os.environ)
    if not args.out:
        print("train.py: give --out DIR (or set OUT)", file=sys.stderr)
        return 2
    for name in ("train.txt", "valid.txt"):
        if not os.path.isfile(os.path.join(args.corpus, name)):
            print("train.py: %s not found in %s: run tools/demo-model/prepare_corpus.sh" % (name, args.corpus),
                  file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train_log.txt"))
    t0 = time.time()
    try:
        import torch
        log("train.py: corpus %s, out %s, minutes %g, steps %d, seed %d"
            % (args.corpus, args.out, args.minutes, args.steps, args.seed))
        log("versions: %s" % json.dumps(versions()))
        tok, model, evalr, info = train(args, log)
        size = save_model(torch, model, args.out, log)
        del model
        prompts, chat, cases = reference(torch, args.out, tok, log)
        golden = {
            "what": "Greedy continuations of the shipped demo model, computed by transformers on the saved "
                    "bf16 weights reloaded in float32 on the CPU (eager attention). prompt_ids include <|bos|>; "
                    "generation stops after %d tokens or at <|eos|> (kept in greedy_ids). greedy_margins[k] is "
                    "the top-1 minus top-2 logit at step k; last_logits are the logits at the last prompt "
                    "position." % GEN_TOKENS,
            "prompts": prompts,
            "chat": chat,
            "tokenizer": cases,
            "perplexity": evalr["perplexity"],
            "valid_loss": evalr["valid_loss"],
            "bits_per_byte": evalr["bits_per_byte"],
            "valid_tokens_predicted": evalr["valid_tokens_predicted"],
            "model_bytes": size,
            "train": dict(info, versions=versions()),
        }
        with open(os.path.join(args.out, "golden.json"), "w", encoding="utf-8") as f:
            json.dump(golden, f, indent=1, ensure_ascii=False)
            f.write("\n")
        extra = sorted(set(os.listdir(args.out)) - set(OUT_FILES))
        missing = sorted(set(OUT_FILES) - set(os.listdir(args.out)))
        if extra:
            log("WARNING: unexpected files in %s: %s" % (args.out, extra))
        if missing:
            log("WARNING: missing files in %s: %s" % (args.out, missing))
        log("SUMMARY: ok steps=%d tokens=%d train_seconds=%.1f total_seconds=%.1f perplexity=%.3f "
            "bits_per_byte=%.4f model_bytes=%d card=%r out=%s"
            % (info["steps"], info["tokens"], info["seconds"], time.time() - t0, evalr["perplexity"],
               evalr["bits_per_byte"], size, info["card"], args.out))
        return 0
    except Exception as e:
        import traceback
        log("ERROR: %s" % e)
        log(traceback.format_exc())
        log("SUMMARY: failed (%s) after %.1fs" % (e, time.time() - t0))
        return 1
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())

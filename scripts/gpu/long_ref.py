#!/usr/bin/env python3
"""long_ref.py — compares tools/long_logits output with Hugging Face transformers (PyTorch, on the GPU machine):
the logits of a long prompt's last positions, computed by one forward pass over the whole prompt in bf16.

usage: long_ref.py MODEL_DIR TAG:IDS_FILE:LOGITS_FILE ...
Loads the model once, then for each case prints one JSON line: per tail position the relative L2 error of our
logits against the reference, their largest absolute difference, whether the argmax agrees, and how many of
the reference's top 10 are in ours."""
import json
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main():
    model_dir, cases = sys.argv[1], sys.argv[2:]
    m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    m = m.cuda().eval()
    for case in cases:
        tag, ids_path, bin_path = case.split(":")
        with open(ids_path) as f:
            ids = [int(x) for x in f.read().strip().split(",")]
        ours = np.fromfile(bin_path, dtype=np.float32)
        vocab = m.config.vocab_size
        tail = ours.size // vocab
        ours = ours.reshape(tail, vocab)
        with torch.no_grad():
            h = m.model(input_ids=torch.tensor([ids], device="cuda")).last_hidden_state[:, -tail:]
            ref = m.lm_head(h).float()[0].cpu().numpy()
        rows = []
        for i in range(tail):
            d = ours[i] - ref[i]
            top_ref = set(np.argsort(-ref[i])[:10].tolist())
            top_ours = set(np.argsort(-ours[i])[:10].tolist())
            rows.append({"rel_l2": float(np.linalg.norm(d) / np.linalg.norm(ref[i])),
                         "max_abs": float(np.abs(d).max()),
                         "argmax_same": bool(int(ours[i].argmax()) == int(ref[i].argmax())),
                         "top10_shared": len(top_ref & top_ours)})
        print(json.dumps({"case": tag, "prompt": len(ids), "tail": tail,
                          "rel_l2_max": max(r["rel_l2"] for r in rows),
                          "argmax_same": sum(r["argmax_same"] for r in rows),
                          "top10_shared_min": min(r["top10_shared"] for r in rows), "rows": rows}), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

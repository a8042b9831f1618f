# sdpa_ref.py — a reference for the prefill attention's speed: PyTorch's scaled_dot_product_attention (its flash
# backend, and FlashAttention 3 where installed) on bench_backend --attn-prefill's shapes, TFLOP/s counted the same way.
# Usage: python3 scripts/gpu/sdpa_ref.py [START ...]   (default: 0 6144 30720)
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

heads, kv, hd, chunk = 32, 8, 128, 2048
starts = [int(a) for a in sys.argv[1:]] or [0, 6144, 30720]


def timed(fn, iters=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters


fa3 = None
try:
    import flash_attn_interface as fa3  # FlashAttention 3 (Hopper), if the image has it
except Exception as e:  # noqa: BLE001 - any import failure means "not installed"
    print(f"flash_attn_interface: not available ({type(e).__name__})")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
for start in starts:
    ctx = start + chunk
    flops = 4.0 * heads * hd * sum(start + i + 1 for i in range(chunk))
    q = torch.randn(1, heads, chunk, hd, device="cuda", dtype=torch.bfloat16) * 0.1
    k = torch.randn(1, kv, ctx, hd, device="cuda", dtype=torch.bfloat16) * 0.1
    v = torch.randn(1, kv, ctx, hd, device="cuda", dtype=torch.bfloat16) * 0.1
    ke, ve = k.repeat_interleave(heads // kv, 1), v.repeat_interleave(heads // kv, 1)
    mask = causal_lower_right(chunk, ctx)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        try:
            ms = timed(lambda: F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask))
            print(f"sdpa flash  chunk {chunk} at {start}: {ms * 1e3:8.1f} us  {flops / ms / 1e9:6.1f} TFLOP/s")
        except RuntimeError as e:
            print(f"sdpa flash at {start}: {e}")
    if fa3 is not None:
        qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        try:
            ms = timed(lambda: fa3.flash_attn_func(qt, kt, vt, causal=True))
            print(f"fa3         chunk {chunk} at {start}: {ms * 1e3:8.1f} us  {flops / ms / 1e9:6.1f} TFLOP/s")
        except Exception as e:  # noqa: BLE001
            print(f"fa3 at {start}: {e}")

#!/usr/bin/env bash
# One short GPU check (<= 10 minutes on one H100/H200), run from the repository root when a GPU is lent:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. msclap-2023 (random weights) embedding throughput in fp32 / bf16 / fp16: clips/s, prompts/s, min cosine
#    to fp32, peak GPU memory;  2. a training step's throughput and model-FLOPs utilisation in bf16.
# Needs no network and no ../shared data for step 1 (synthetic 7 s clips); step 2 uses ../shared/data when
# present and is skipped (saying so) otherwise. Writes OUT_DIR/gpu_check.txt (default: $OUT or /tmp).
set -euo pipefail
OUT_DIR="${1:-${OUT:-/tmp}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG"
timeout 300 python - <<'PY' 2>&1 | tee -a "$LOG"
import time, torch, numpy as np, openclap
assert torch.cuda.is_available(), "no CUDA device"
pipe = openclap.load("msclap-2023", pretrained=False, device="cuda")
g = torch.Generator().manual_seed(0)
wave = torch.randn(64, 7 * 44100, generator=g) * 0.1
prompts = [f"this is the sound of item {i}" for i in range(256)]
ref_a = ref_t = None
print("| dtype | clips/s (batch 64, 7 s) | prompts/s (256) | min cos audio | min cos text | peak GPU MB |")
print("|---|---|---|---|---|---|")
for dtype in ("float32", "bfloat16", "float16"):
    pipe.configure(dtype=dtype)
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        w = wave.cuda()
        for _ in range(2):
            a = pipe.model.encode_audio(w)
        torch.cuda.synchronize(); t0 = time.perf_counter()
        for _ in range(5):
            a = pipe.model.encode_audio(w)
        torch.cuda.synchronize(); ta = (time.perf_counter() - t0) / 5
    pipe.embed_text(prompts)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    t = pipe.embed_text(prompts, batch_size=256)
    tt = time.perf_counter() - t0
    a = a.float().cpu().numpy()
    if ref_a is None:
        ref_a, ref_t = a, t
    ca, ct = (a * ref_a).sum(1).min(), (t * ref_t).sum(1).min()
    print(f"| {dtype} | {64 / ta:.1f} | {256 / tt:.0f} | {ca:.6f} | {ct:.6f} | {torch.cuda.max_memory_allocated() / 2**20:.0f} |")
PY
if [ -d ../shared/data ]; then
  timeout 300 python benchmarks/train_throughput.py --models msclap-2023 --device cuda --precision bf16 \
    --batch-size 64 --steps 8 --warmup 3 --flops --peak-tflops 989 --num-workers 4 2>&1 | tail -15 | tee -a "$LOG"
else
  echo "training step skipped: ../shared/data not found (benchmarks/train_throughput.py needs real clips)" | tee -a "$LOG"
fi

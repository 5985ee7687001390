"""Model FLOPs utilization on CPU: training FLOP/s against this machine's measured fp32 matmul peak.

FLOPs per token (bench/README.md explains the multiples): N = weights in matmuls (every nn.Linear,
the LM head included even when tied to the embedding; the embedding lookup is no matmul).
Forward 2N; backward 2N for the activation gradients + 2N for the weight gradients, the latter
skipped for LoRA's frozen base (so 4N instead of 6N); LoRA's own A/B matmuls cost 6 x their
weights; a reference forward adds 2N. The harness default (reference log-probs precomputed and
shared) has no reference forward in the step, so: 4N + 6*N_lora per trained token (chosen and
rejected sequences both counted, prompt tokens included, padding not).
"""
from __future__ import annotations

import gc
import time

from bench.common import Line, Settings, bench_rows, cpu_count, fresh_dir, load_smollm, median, progress, smollm_config


def matmul_peak_gflops(quick: bool = False, n: int = 2048) -> float:
    """Best of several fp32 n x n @ n x n products with torch's default threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, page faults
    best = 0.0
    for _ in range(3 if quick else 8):
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return best


def matmul_weights(model, lora_r: int) -> tuple[int, int]:
    """(N, N_lora): weights of every nn.Linear (LM head included), and LoRA A+B weights on the decoder's linears."""
    import torch

    n = n_lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            n += module.weight.numel()
            if not name.endswith("lm_head"):  # PEFT's "all-linear" leaves the output layer out
                n_lora += lora_r * (module.in_features + module.out_features)
    return n, n_lora


def _own_runs(settings: Settings) -> list[dict]:
    """When the training figure did not run: a warm-up cell, then harness-default cells with the peak before each."""
    import copy

    from harness.training import train_cell

    work = fresh_dir(settings.work_dir / "mfu")
    loaded = load_smollm(settings.cache_dir)
    cfg = smollm_config(work / "out", work / "cache", max_steps=settings.train_steps, precompute=True)
    rows = bench_rows(cfg, loaded, settings.train_steps * cfg.training.batch_size)
    progress("mfu: warm-up cell")
    warm = smollm_config(work / "out", work / "cache", max_steps=1, precompute=True)
    train_cell(warm, copy.deepcopy(loaded.model), loaded.tokenizer, rows, work / "warmup", base_fingerprint=loaded.fingerprint)
    runs = []
    for i in range(settings.reps):
        gc.collect()
        peak = matmul_peak_gflops(settings.quick)
        progress(f"mfu: cell {i + 1}/{settings.reps}")
        result = train_cell(cfg, copy.deepcopy(loaded.model), loaded.tokenizer, rows, work / f"cell-{i}",
                            base_fingerprint=loaded.fingerprint)
        tokens = max((h.get("num_tokens", 0.0) for h in result.history), default=0.0)
        runs.append({"tokens": tokens, "train_seconds": result.seconds, "peak_gflops": peak})
    settings.shared["mfu_model"] = loaded.model
    return runs


def measure(settings: Settings) -> list[Line]:
    import torch

    from bench.common import TRAINING

    runs = settings.shared.get("mfu_runs") or _own_runs(settings)
    n, n_lora = matmul_weights(settings.shared["mfu_model"], TRAINING["lora"]["r"])
    flops_per_token = 4 * n + 6 * n_lora
    utils, tps, peaks = [], [], []
    for r in runs:
        tokens_per_s = r["tokens"] / r["train_seconds"]
        tps.append(tokens_per_s)
        peaks.append(r["peak_gflops"])
        utils.append(tokens_per_s * flops_per_token / (r["peak_gflops"] * 1e9))
    mfu = median(utils)
    return [Line(
        "mfu_cpu", f"{100 * mfu:.1f}%",
        f"harness DPO+LoRA training (trainer.train() of a {settings.train_steps}-step cell, reference log-probs precomputed) "
        f"{median(tps):.0f} tokens/s x (4N + 6N_lora = {flops_per_token / 1e9:.3f} GFLOP/token, "
        f"N={n / 1e6:.1f}M, N_lora={n_lora / 1e6:.2f}M) = {median(tps) * flops_per_token / 1e9:.1f} GFLOP/s vs measured "
        f"fp32 matmul peak {median(peaks):.0f} GFLOP/s (2048^3 torch.mm, best of {3 if settings.quick else 8}, "
        f"{torch.get_num_threads()} threads on {cpu_count()} cores), peak measured just before each cell, "
        f"median of {len(runs)}; informational (the issue sets no number)")]

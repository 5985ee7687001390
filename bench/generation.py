"""Generation: evals.generation.generate batched (batch 8) vs one prompt at a time, on CPU; vLLM on a GPU.

Same prompts (held-out verifiable prompts, chat template), greedy, same max_new_tokens, no cache
(cache_dir=None), alternating batch 8 / batch 1 in each round. Tokens/s counts each side's own
generated tokens (greedy output can differ in the last bits between batch shapes).
"""
from __future__ import annotations

import time

from bench.common import Line, Settings, goal, load_smollm, median, progress, ratio

GOAL = 4.0


def _tokens_per_s(model, tok, prompts, settings, batch_size) -> tuple[float, int, float]:
    from evals.generation import generate

    started = time.perf_counter()
    out = generate(model, tok, prompts, settings, model_fingerprint="bench", cache_dir=None, batch_size=batch_size,
                   label=f"bench batch {batch_size}")
    seconds = time.perf_counter() - started
    tokens = sum(c.n_tokens for c in out)
    return tokens / seconds, tokens, seconds


def measure(settings: Settings) -> list[Line]:
    import torch

    from evals.generation import DecodingSettings
    from harness.data.verifiable import make_prompts

    n_prompts, max_new = (8, 16) if settings.quick else (16, 24)
    loaded = load_smollm(settings.cache_dir)
    model, tok = loaded.model, loaded.tokenizer
    prompts = [p.text for p in make_prompts(n_prompts, 0, split="eval")]
    greedy = DecodingSettings(max_new_tokens=max_new, temperature=0.0, seed=0)
    _tokens_per_s(model, tok, prompts[:2], greedy, 2)  # warm-up, not timed
    batched, single, ratios = [], [], []
    for i in range(settings.reps):
        progress(f"generation: round {i + 1}/{settings.reps}")
        pair = {}
        for bs in ((8, 1) if i % 2 == 0 else (1, 8)):
            pair[bs] = _tokens_per_s(model, tok, prompts, greedy, bs)
        batched.append(pair[8][0])
        single.append(pair[1][0])
        ratios.append(pair[8][0] / pair[1][0])
    r = median(ratios)
    lines = [Line("generation_batched_cpu", ratio(r),
                  f"batch 8 {median(batched):.1f} tokens/s vs one prompt at a time {median(single):.1f} tokens/s, "
                  f"{n_prompts} prompts x up to {max_new} new tokens, greedy, evals.generation.generate, "
                  f"median of {settings.reps}; {goal(r >= GOAL, f'>= {GOAL:g}x')}", missed=r < GOAL)]
    if torch.cuda.is_available():
        from bench.gpu_generation import gpu_line
        from harness.models import resolve_model_path

        lines.append(gpu_line(resolve_model_path(loaded.name, settings.cache_dir), prompts, settings.quick))
    else:
        lines.append(Line("generation_gpu", "skipped", "no GPU here"))
    return lines

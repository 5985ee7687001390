"""Training step: a harness cell's training vs a plain TRL DPOTrainer script, and vs the seed's second-model reference.

Four configurations run interleaved in one process, in rounds whose order rotates, on the same
base weights (a deep copy per run: TRL's LoRA injection edits the model in place), the same rows,
LoRA, batch and DPOConfig arguments:

- `plain`: bench.plain_trl.run_plain_dpo - DPOConfig + DPOTrainer(peft_config=...) + train + save_model;
  reference = base with adapters disabled, computed every step (TRL's default).
- `harness_noprecompute`: harness.training.train_cell with training.precompute_ref_log_probs=false
  (like for like with `plain`).
- `harness`: train_cell with the default (reference log-probs precomputed once per row and shared through
  the cache; the cache is warm, as for every cell after the first of a sweep).
- `ref_copy`: the seed scaffold: plain TRL with ref_model= a second full copy of the model.

Timed: construction + trainer.train() + saving (train_cell whole, on the harness side); model loading is
excluded on both sides (the copy is made before the clock starts).
"""
from __future__ import annotations

import copy
import gc
import time

from bench.common import (
    Line,
    Settings,
    bench_rows,
    fresh_dir,
    goal,
    load_smollm,
    median,
    progress,
    ratio,
    smollm_config,
)

CONFIGS = ("plain", "harness_noprecompute", "harness", "ref_copy")
OVERHEAD_GOAL = 1.03


def check_same_arguments(config, rows, out_dir, steps) -> list[str]:
    """The plain script's DPOConfig/LoRA arguments must be the harness's: differences listed (outside timing)."""
    from bench.plain_trl import plain_dpo_args, plain_lora
    from harness.training import _lora, trl_arguments
    from harness.variants import VARIANTS

    ours = plain_dpo_args(out_dir, steps)
    theirs = trl_arguments(config, VARIANTS.get(config.variant), out_dir, rows)
    diffs = [f"{k}: plain {ours.get(k)!r} vs harness {theirs.get(k)!r}" for k in sorted(set(ours) | set(theirs))
             if ours.get(k) != theirs.get(k)]
    a, b = plain_lora(), _lora(config)
    for k in ("r", "lora_alpha", "lora_dropout", "target_modules"):
        if getattr(a, k) != getattr(b, k):
            diffs.append(f"lora.{k}: plain {getattr(a, k)!r} vs harness {getattr(b, k)!r}")
    return diffs


def measure(settings: Settings, *, want_mfu: bool = False) -> list[Line]:
    from bench.plain_trl import run_plain_dpo
    from harness.training import train_cell

    steps, reps = settings.train_steps, settings.reps
    work = fresh_dir(settings.work_dir / "train_step")
    loaded = load_smollm(settings.cache_dir)
    pristine, tok, fp = loaded.model, loaded.tokenizer, loaded.fingerprint
    cfg_pre = smollm_config(work / "out", work / "cache", max_steps=steps, precompute=True)
    cfg_nopre = smollm_config(work / "out", work / "cache", max_steps=steps, precompute=False)
    rows = bench_rows(cfg_pre, loaded, steps * cfg_pre.training.batch_size)
    diffs = check_same_arguments(cfg_nopre, rows, work / "x" / "trainer", steps)

    def fresh_model():
        gc.collect()
        return copy.deepcopy(pristine)

    def run(name: str, i: int) -> tuple[float, dict]:
        out = work / f"{name}-{i}"
        if name == "plain":
            model = fresh_model()
            seconds, trainer = run_plain_dpo(model, tok, rows, out, steps)
            info = {"tokens": trainer.state.log_history[-1].get("num_tokens") if trainer.state.log_history else None}
            del trainer
        elif name == "ref_copy":
            model, ref = fresh_model(), fresh_model()
            ref.eval()
            seconds, trainer = run_plain_dpo(model, tok, rows, out, steps, ref_model=ref)
            info = {}
            del trainer, ref
        else:
            model = fresh_model()
            cfg = cfg_pre if name == "harness" else cfg_nopre
            started = time.perf_counter()
            result = train_cell(cfg, model, tok, rows, out, base_fingerprint=fp)
            seconds = time.perf_counter() - started
            tokens = max((h.get("num_tokens", 0.0) for h in result.history), default=0.0)
            info = {"tokens": tokens, "train_seconds": result.seconds}
            del result
        del model
        gc.collect()
        return seconds, info

    # warm-up (not timed): lazy imports, allocator, and the shared reference log-probs cache (its key does not
    # depend on max_steps, so a 1-step cell primes it for the timed `harness` runs)
    progress("train_step: warm-up cell (primes the shared reference log-probs)")
    warm_cfg = smollm_config(work / "out", work / "cache", max_steps=1, precompute=True)
    train_cell(warm_cfg, fresh_model(), tok, rows, work / "warmup", base_fingerprint=fp)
    gc.collect()

    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    infos: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    peaks: list[float] = []
    for i in range(reps):
        order = CONFIGS[i % len(CONFIGS):] + CONFIGS[: i % len(CONFIGS)]
        for name in order:
            if name == "harness" and want_mfu:
                from bench.mfu import matmul_peak_gflops

                peaks.append(matmul_peak_gflops(settings.quick))
            progress(f"train_step: round {i + 1}/{reps}: {name}")
            seconds, info = run(name, i)
            times[name].append(seconds)
            infos[name].append(info)
    if want_mfu:
        settings.shared["mfu_runs"] = [
            {"tokens": info["tokens"], "train_seconds": info["train_seconds"], "peak_gflops": peak}
            for info, peak in zip(infos["harness"], peaks)]
        settings.shared["mfu_model"] = pristine

    per_step = {c: median(v) / steps for c, v in times.items()}

    def paired(a: str, b: str) -> float:  # the median of the per-round ratios: robust to the load drifting between rounds
        return median([x / y for x, y in zip(times[a], times[b])])

    def rounds(a: str, b: str) -> str:
        return "per round " + "/".join(f"{x / y:.3f}" for x, y in zip(times[a], times[b]))

    basis = (f"construct+train+save, {steps} step(s) of batch 4 (~{_tokens_per_step(infos, steps)} tokens), "
             f"time medians and median ratio of {reps} interleaved rounds")
    arg_note = "; plain script's arguments = harness's" if not diffs else f"; ARGUMENTS DIFFER: {'; '.join(diffs)}"
    r0 = paired("harness_noprecompute", "plain")
    r1 = paired("harness", "plain")
    r2 = paired("harness", "ref_copy")
    return [
        Line("train_step_overhead", ratio(r0),
             f"harness {per_step['harness_noprecompute']:.2f} s vs plain TRL {per_step['plain']:.2f} s per step, "
             f"like for like: both compute the reference every step; {rounds('harness_noprecompute', 'plain')}; "
             f"{basis}{arg_note}; "
             f"{goal(r0 < OVERHEAD_GOAL, f'< {OVERHEAD_GOAL}x')}", missed=r0 >= OVERHEAD_GOAL),
        Line("train_step_harness_default", ratio(r1),
             f"harness default {per_step['harness']:.2f} s vs plain TRL {per_step['plain']:.2f} s per step: "
             f"reference log-probs precomputed once and shared (warm cache, as for every sweep cell after the "
             f"first); {rounds('harness', 'plain')}; {basis}; {goal(r1 < OVERHEAD_GOAL, f'< {OVERHEAD_GOAL}x')}",
             missed=r1 >= OVERHEAD_GOAL),
        Line("ref_step_time_vs_copy", ratio(r2),
             f"adapters disabled + precomputed reference log-probs {per_step['harness']:.2f} s vs second full "
             f"reference model {per_step['ref_copy']:.2f} s per step; {rounds('harness', 'ref_copy')}; {basis}; "
             f"{goal(r2 < 1.0, '< 1x')}",
             missed=r2 >= 1.0),
    ]


def _tokens_per_step(infos: dict[str, list[dict]], steps: int) -> str:
    tokens = [i.get("tokens") for i in infos.get("harness", []) if i.get("tokens")]
    return f"{median(tokens) / steps:.0f}" if tokens else "?"

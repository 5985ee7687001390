"""A DPO training cell on a GPU: the harness's `train_cell` vs the plain TRL script, side by side.

Imports torch, transformers, peft, trl, datasets and pydantic only (no MLflow, lm-eval, alpaca-eval),
so it runs on a bare GPU machine with those carried as wheels:

    python -m bench.gpu_train_cell --model-dir DIR [--random-init] [--steps 16] [--batch 8] [--rows 128]

`--random-init` builds the architecture in DIR/config.json with random weights (step time does not
depend on the weights). Each side trains a fresh deep copy of the same base in the same process, after
one untimed warm-up run (CUDA context, kernels); construction + train() + saving are timed, as in
bench.train_step. Printed: seconds per step for plain TRL, the harness without and with its shared
reference log-probs (warm cache, as for every sweep cell after the first), and the ratios.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import tempfile
import time
from pathlib import Path


def _rows(n: int, seed: int = 0) -> list[dict]:
    from harness.data.verifiable import make_prompts, template_answer

    rng = random.Random(seed)
    rows = []
    for p in make_prompts(n, seed, split="train"):
        rows.append({"prompt": [{"role": "user", "content": p.text}],
                     "chosen": [{"role": "assistant", "content": template_answer(p, comply=True, rng=rng)}],
                     "rejected": [{"role": "assistant", "content": template_answer(p, comply=False, rng=rng)}]})
    return rows


def _config(out: Path, steps: int, batch: int, precompute: bool):
    from harness.config import ExperimentConfig

    return ExperimentConfig.model_validate({
        "model": {"name": "gpu-bench"}, "variant": "dpo", "beta": 0.1, "output_dir": str(out),
        "training": {"max_steps": steps, "batch_size": batch, "learning_rate": 2e-4, "max_length": 128,
                     "precompute_ref_log_probs": precompute, "lora": {"r": 16, "alpha": 32}}})


def _synced(fn):
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    started = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3, help="timed runs per side (interleaved; the median is reported)")
    ap.add_argument("--cpu-smoke", action="store_true", help="run on the CPU (a check of the script, not a figure)")
    a = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from bench.plain_trl import plain_dpo_args, plain_lora
    from harness.training import train_cell

    if not (torch.cuda.is_available() or a.cpu_smoke):
        raise SystemExit("no CUDA device (use --cpu-smoke to check the script on a CPU)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    if a.random_init:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(a.model_dir), dtype=torch.float32)
    else:
        base = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32, use_safetensors=True)
    base = base.to(device).eval()
    rows = _rows(a.rows)
    work = Path(tempfile.mkdtemp(prefix="gpu-train-cell-"))

    def plain(tag: str) -> float:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        def go():
            args = plain_dpo_args(work / tag / "trainer", a.steps) | {
                "use_cpu": device == "cpu", "per_device_train_batch_size": a.batch}
            trainer = DPOTrainer(model=copy.deepcopy(base), args=DPOConfig(**args), train_dataset=Dataset.from_list(rows),
                                 processing_class=tok, peft_config=plain_lora())
            trainer.train()
            trainer.save_model(str(work / tag / "adapter"))
        return _synced(go)

    def harness(tag: str, precompute: bool) -> float:
        config = _config(work / "harness-out", a.steps, a.batch, precompute)
        return _synced(lambda: train_cell(config, copy.deepcopy(base), tok, rows, work / tag, base_fingerprint="gpu-bench"))

    plain("warmup")
    harness("warmup-harness", precompute=True)  # also fills the shared reference log-probs cache
    times: dict[str, list[float]] = {"plain": [], "harness": [], "default": []}
    for rep in range(a.reps):  # interleaved, order rotated each round, median per side
        sides = [("plain", lambda: plain(f"plain{rep}")), ("harness", lambda: harness(f"h{rep}", precompute=False)),
                 ("default", lambda: harness(f"d{rep}", precompute=True))]
        for name, fn in sides[rep % 3:] + sides[: rep % 3]:
            times[name].append(fn())
    t_plain, t_harness, t_default = (sorted(times[k])[len(times[k]) // 2] for k in ("plain", "harness", "default"))
    name = torch.cuda.get_device_properties(0).name if device == "cuda" else "cpu"
    out = {
        "device": name, "torch": torch.__version__, "steps": a.steps, "batch": a.batch, "rows": a.rows,
        "plain_trl_s_per_step": t_plain / a.steps, "harness_s_per_step": t_harness / a.steps,
        "harness_default_s_per_step": t_default / a.steps,
        "gpu_train_step_overhead": t_harness / t_plain, "gpu_train_step_harness_default": t_default / t_plain,
        "runs_s": times, "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }
    print(json.dumps(out, indent=1))
    print(f"gpu_train_step_overhead: {out['gpu_train_step_overhead']:.3f}x (harness train_cell "
          f"{out['harness_s_per_step']:.3f} s/step vs plain TRL {out['plain_trl_s_per_step']:.3f} s/step, {a.steps} steps "
          f"of batch {a.batch}, fp32, {name}, median of {a.reps} interleaved runs; goal < 1.03x: {'met' if out['gpu_train_step_overhead'] < 1.03 else 'MISSED'})")
    print(f"gpu_train_step_harness_default: {out['gpu_train_step_harness_default']:.3f}x (shared reference log-probs, "
          f"warm: {out['harness_default_s_per_step']:.3f} s/step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

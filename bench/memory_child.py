"""One training configuration in a process of its own; prints its peak RSS (VmHWM) as JSON on the last line.

    python -m bench.memory_child {harness|ref_copy|sft|sft_pairs} --cache-dir DIR --work-dir DIR --steps N

- harness: harness.training.train_cell, LoRA DPO, reference = base with adapters disabled, reference
  log-probs precomputed (cold: this process computes them, as the first cell of a sweep does).
- ref_copy: the seed scaffold: plain TRL DPOTrainer with ref_model= a second full model loaded from disk.
- sft: plain TRL SFTTrainer, LoRA, on the chosen completions (same model, batch 4, max_length, LoRA).
- sft_pairs: the same SFT on the chosen and the rejected completions as separate rows, batch 8: the
  very sequences one DPO step runs through the policy.

Every configuration imports the same modules before measuring, so the baseline is the same.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", choices=["harness", "ref_copy", "sft", "sft_pairs"])
    ap.add_argument("--cache-dir", required=True, type=Path)
    ap.add_argument("--work-dir", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()

    # the same imports in every configuration
    import trl  # noqa: F401
    from trl import DPOTrainer, SFTTrainer  # noqa: F401

    from bench.common import bench_rows, load_smollm, rss_mib, smollm_config
    from bench.plain_trl import run_plain_dpo, run_plain_sft
    from harness.training import train_cell

    out: dict = {"config": a.config, "rss_after_imports_mib": rss_mib()}
    loaded = load_smollm(a.cache_dir)
    # config.cache_dir is this process's own: data and (for `harness`) the reference log-probs are built here
    cfg = smollm_config(a.work_dir / "out", a.work_dir / "cache", max_steps=a.steps, precompute=True)
    rows = bench_rows(cfg, loaded, a.steps * cfg.training.batch_size)
    out["rss_after_load_mib"] = rss_mib()
    started = time.perf_counter()
    if a.config == "harness":
        result = train_cell(cfg, loaded.model, loaded.tokenizer, rows, a.work_dir / "cell",
                            base_fingerprint=loaded.fingerprint)
        out["train_seconds"] = result.seconds
    elif a.config == "ref_copy":
        ref = load_smollm(a.cache_dir).model  # the scaffold loads the reference as a second full model
        seconds, _ = run_plain_dpo(loaded.model, loaded.tokenizer, rows, a.work_dir / "plain", a.steps, ref_model=ref)
    else:
        seconds, _ = run_plain_sft(loaded.model, loaded.tokenizer, rows, a.work_dir / "sft", a.steps,
                                   both=a.config == "sft_pairs")
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mib"] = rss_mib()
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # includes the parent's peak
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

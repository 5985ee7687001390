"""Train one cell: the variant's TRL trainer with a LoRA adapter; the adapter saved as safetensors.

With a PEFT model and no `ref_model`, TRL's reference is the base with adapters disabled,
so reference-based variants never hold a second copy of the model.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness.atomic_io import read_json, write_json_atomic
from harness.config import ExperimentConfig
from harness.variants import VARIANTS, VariantSpec, kto_balanced_weights


@dataclass
class TrainingResult:
    adapter_dir: Path
    history: list[dict[str, float]]
    seconds: float
    trl_params: dict[str, Any] = field(default_factory=dict)  # the variant's effective TRL settings, for logging
    model: Any = None  # the PEFT model, adapters active


class _HistoryCallback(TrainerCallback):
    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            row = {"step": float(state.global_step)}
            row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
            self.history.append(row)


def _to_unpaired(rows: list[dict]) -> list[dict]:
    """Each pair becomes one desirable and one undesirable row (KTO's data shape)."""
    out = []
    for r in rows:
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return out


def _lora(config: ExperimentConfig):
    from peft import LoraConfig

    lora = config.training.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def trl_arguments(config: ExperimentConfig, spec: VariantSpec, output_dir: Path, rows: list[dict]) -> dict[str, Any]:
    t = config.training
    params = spec.resolve_params(config.variant_params)
    args: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=t.max_steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        warmup_steps=t.warmup_steps, logging_steps=t.logging_steps, max_length=t.max_length,
        seed=config.seed, report_to=[], save_strategy="no", use_cpu=not _cuda(), bf16=False,
        dataloader_num_workers=0, disable_tqdm=False, remove_unused_columns=False,
    )
    args.update(spec.to_trl(float(config.beta), params))
    if spec.name == "kto":
        n_d = sum(1 for r in rows if r["label"])
        n_u = len(rows) - n_d
        auto_d, auto_u = kto_balanced_weights(n_d, n_u)
        args["desirable_weight"] = params["desirable_weight"] or auto_d
        args["undesirable_weight"] = params["undesirable_weight"] or auto_u
    return args


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _shares_reference_logps(spec: VariantSpec, config: ExperimentConfig) -> bool:
    """DPOTrainer variants score the same reference on the same rows: do it once, for every cell."""
    return spec.trainer == "trl:DPOTrainer" and config.training.precompute_ref_log_probs


def reference_logps_key(rows: list[dict], config: ExperimentConfig, base_fingerprint: str) -> str:
    payload = json.dumps({"rows": rows, "max_length": config.training.max_length, "model": base_fingerprint},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def train_cell(config: ExperimentConfig, base_model, tokenizer, train_rows: list[dict], output_dir: Path,
               *, base_fingerprint: str = "") -> TrainingResult:
    from datasets import Dataset

    spec = VARIANTS.get(config.variant)
    rows = train_rows
    if spec.data_shape == "unpaired" and rows and "chosen" in rows[0]:
        rows = _to_unpaired(rows)
    args = trl_arguments(config, spec, output_dir / "trainer", rows)
    shared_logps = None
    cache_path = None
    if _shares_reference_logps(spec, config) and base_fingerprint:
        cache_path = config.resolved_cache_dir / "ref_logps" / f"{reference_logps_key(rows, config, base_fingerprint)}.json"
        shared_logps = read_json(cache_path)
        # first cell: TRL precomputes (reference = base with adapters disabled); later cells reuse that
        args["precompute_ref_log_probs"] = shared_logps is None
    trl_config = spec.config_class()(**args)
    history = _HistoryCallback()
    trainer_cls = spec.trainer_class()
    trainer = trainer_cls(
        model=base_model, ref_model=None, args=trl_config, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, peft_config=_lora(config), callbacks=[history],
    ) if spec.needs_reference else trainer_cls(
        model=base_model, args=trl_config, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, peft_config=_lora(config), callbacks=[history],
    )
    if cache_path is not None:
        if shared_logps is None:
            write_json_atomic(cache_path, {"chosen": list(trainer.train_dataset["ref_chosen_logps"]),
                                           "rejected": list(trainer.train_dataset["ref_rejected_logps"])})
        else:
            # TRL reads these columns instead of running the reference when precompute_ref_logps is set;
            # the processed dataset keeps the row order of `rows`, which the cache key covers
            trainer.train_dataset = (trainer.train_dataset
                                     .add_column("ref_chosen_logps", shared_logps["chosen"])
                                     .add_column("ref_rejected_logps", shared_logps["rejected"]))
            trainer.precompute_ref_logps = True
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    adapter_dir = output_dir / "adapter"
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    tokenizer.save_pretrained(adapter_dir)
    trainer.model.eval()
    effective = {k: v for k, v in args.items() if k not in ("output_dir", "report_to", "disable_tqdm")}
    return TrainingResult(adapter_dir=adapter_dir, history=history.history, seconds=seconds,
                          trl_params=effective, model=trainer.model)

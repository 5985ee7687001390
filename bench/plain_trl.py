"""The obvious alternative: a hand-written TRL DPO script, no harness code in it.

Same model, rows, LoRA, batch and DPOConfig arguments as a harness cell (bench.train_step checks
that the arguments match harness.training.trl_arguments outside the timed region). It saves the
adapter at the end, as any real script does (the harness cell saves adapter + tokenizer too).
"""
from __future__ import annotations

import time
from pathlib import Path


def plain_dpo_args(output_dir: Path, max_steps: int) -> dict:
    return dict(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=1, learning_rate=2.0e-4, warmup_steps=0, logging_steps=1, max_length=128,
        seed=0, report_to=[], save_strategy="no", use_cpu=True, bf16=False, dataloader_num_workers=0,
        disable_tqdm=False, remove_unused_columns=False, beta=0.1, loss_type=["sigmoid"], label_smoothing=0.0,
    )


def plain_lora():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def run_plain_dpo(model, tokenizer, rows: list[dict], output_dir: Path, max_steps: int, *, ref_model=None,
                  precompute: bool = False) -> tuple[float, object]:
    """Construct, train, save. Returns (seconds, trainer). `ref_model`: the seed scaffold's second full model."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    args = DPOConfig(**plain_dpo_args(output_dir / "trainer", max_steps), precompute_ref_log_probs=precompute)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=plain_lora())
    trainer.train()
    trainer.save_model(str(output_dir / "adapter"))
    return time.perf_counter() - started, trainer


def run_plain_sft(model, tokenizer, rows: list[dict], output_dir: Path, max_steps: int, *,
                  both: bool = False) -> tuple[float, object]:
    """A plain LoRA SFT step, same model, max_length and LoRA. On the chosen completions, batch 4 (the DPO
    batch's pairs); with `both`, on the chosen AND rejected completions as separate rows, batch 8: the same
    sequences, the same tokens, as one DPO step processes."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    sft_rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]
    if both:
        sft_rows = [x for r in rows for x in ({"prompt": r["prompt"], "completion": r["chosen"]},
                                                {"prompt": r["prompt"], "completion": r["rejected"]})]
    args = SFTConfig(output_dir=str(output_dir / "trainer"), max_steps=max_steps,
                     per_device_train_batch_size=8 if both else 4, learning_rate=2.0e-4, logging_steps=1,
                     max_length=128, seed=0, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                     dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(sft_rows),
                         processing_class=tokenizer, peft_config=plain_lora())
    trainer.train()
    return time.perf_counter() - started, trainer

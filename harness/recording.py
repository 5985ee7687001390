"""What a cell run writes besides its metrics: the inputs a later gate re-reads (config.json,
eval_errors.json, the checkpoint), the baselines rules compare with, generations, the gate plan
and the report. Everything written goes through `redacted_config` / the tracker's redaction.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from evals.metrics import neutral_values
from harness.atomic_io import write_text_atomic
from harness.config import ExperimentConfig
from harness.promotion import files_under
from harness.redaction import redact, scrub_text


def redacted_config(config: ExperimentConfig) -> dict:
    """The config as written anywhere (config.json, the checkpoint's harness_config.json, the report):
    secret-named keys and secret-looking values (URL credentials, bearer tokens, API keys) removed."""
    return redact(config.model_dump(mode="json"))


def reference_baseline(metrics: dict[str, float], reference_domain: dict[str, float]) -> dict[str, float]:
    """The reference measured against itself: every declared neutral value (`register_metric(...,
    neutral=)`: win rate 50, KL 0, length ratio 1, ...), its own mean length, and its measured
    domain results."""
    base = {k: v for k, v in neutral_values().items() if "_vs_start/" not in k}
    if "length/reference_mean_tokens" in metrics:
        base["length/policy_mean_tokens"] = metrics["length/reference_mean_tokens"]
    base.update(reference_domain)
    return base


def start_values(metrics: dict[str, float], start_domain: dict[str, float]) -> dict[str, float]:
    """The starting model measured against itself, for rules `against: start` in rounds >= 2: the
    neutral values under both names (`winrate/...` and `winrate_vs_start/...`), with the start's own
    mean length and domain results."""
    out = neutral_values() | dict(start_domain)
    if "length_vs_start/reference_mean_tokens" in metrics:
        out["length/policy_mean_tokens"] = metrics["length_vs_start/reference_mean_tokens"]
        out["length_vs_start/policy_mean_tokens"] = metrics["length_vs_start/reference_mean_tokens"]
    return out


def record_inputs(tracker, config: ExperimentConfig, errors: dict[str, str], adapter_dir: Path,
                  lineage: tuple[Path, ...] = ()) -> dict[str, Path]:
    """config.json, eval_errors.json and the checkpoint (with the earlier rounds' adapters of an
    iterative run); returns the checkpoint's files, whose hashes become part of the run's evidence."""
    tracker.log_json(redacted_config(config), "config.json")
    tracker.log_json(errors, "eval_errors.json")
    # the registered checkpoint carries its config next to the adapter and tokenizer
    (adapter_dir / "harness_config.json").write_text(json.dumps(redacted_config(config), indent=1))
    tracker.log_artifact(adapter_dir, "checkpoint")
    uploaded: dict[str, Path] = {}
    if lineage:  # a later round's adapter sits on the earlier rounds' merged weights: ship them along
        from harness.models import write_adapter_stack

        write_adapter_stack(adapter_dir, config.model.name, lineage)
        for i, earlier in enumerate(lineage, start=1):
            tracker.log_artifact(earlier, f"checkpoint/base_adapters/round-{i}")
            uploaded |= files_under(earlier, f"base_adapters/round-{i}/")
        tracker.log_artifact(adapter_dir / "adapter_stack.json", "checkpoint")
    return uploaded | files_under(adapter_dir)


def write_generations(path: Path, samples: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(s) + "\n" for s in samples))


def gate_plan_for_report(config: ExperimentConfig, tracker, evaluated_prompts: int | None = None) -> dict | None:
    """What the gate could detect at this run's eval sizes (harness.gate_plan), logged as gate_plan.json;
    `evaluated_prompts`: the prompts the run evaluated (its prompt set, not a sequential stop chosen from the
    data). A view, not a verdict: a failure here is recorded and the report goes on without it."""
    from harness.gate_plan import cached_plan

    try:
        plan = cached_plan(config, config.resolved_cache_dir, evaluated_prompts=evaluated_prompts)
        tracker.log_json(plan, "gate_plan.json")
        return plan
    except Exception as exc:
        tracker.set_tags({"harness.gate_plan_error": f"{type(exc).__name__}: {exc}"[:1000]})
        return None


def report_or_recorded_failure(tracker, render: Callable[[], Path], say: Callable[[str], None]) -> str:
    """The report's path, or "" with the error in the run's tags. The decision is made and recorded by
    then; a report that cannot render is a broken view, not a failed experiment or sweep (failing here
    would mark a promoted run FAILED)."""
    try:
        return str(render().resolve())
    except Exception as exc:
        tracker.set_tags({"harness.report_error": f"{type(exc).__name__}: {exc}"[:1000]})
        say(scrub_text(f"report failed: {type(exc).__name__}: {exc}"))  # the console is not the tracker: scrub here
        return ""

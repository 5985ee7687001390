"""Preference data for a run: built on-policy from verifiable prompts, or loaded from the user's files
(or production feedback), checked, split by prompt into train and held-out, and counted.

Rows reach TRL in its conversational format (prompt / chosen / rejected as message lists)
so that the chat template is applied exactly once, by TRL, as in generation. Every dropped
row is counted under a reason; nothing is dropped silently.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.atomic_io import read_json, write_json_atomic
from harness.config import ExperimentConfig
from harness.data.checks import check_rows
from harness.data.feedback import feedback_pairs, select_feedback
from harness.data.rounds import best_vs_worst, pool_prompts, rank_by_judge
from harness.data.rows import ParsedRow, RowError, normalise_prompt, prompt_of_row, read_rows
from harness.data.verifiable import VerifiablePrompt, make_prompts, template_answer
from harness.errors import DataError


@dataclass
class PreferenceData:
    train: list[dict]  # TRL conversational rows
    heldout: list[dict]  # plain-text pairs {prompt, chosen, rejected} for the chosen-log-prob eval
    dropped: Counter = field(default_factory=Counter)
    source: str = ""
    shape: str = "paired"  # "unpaired": train rows are KTO's prompt/completion/label
    check: Any = None  # the data check's report (harness.data.checks.DataCheckReport), when it ran

    def stats(self) -> dict[str, Any]:
        out = {"source": self.source, "pairs": len(self.train), "heldout_pairs": len(self.heldout),
               "dropped": dict(self.dropped), "dropped_total": sum(self.dropped.values())}
        if self.shape != "paired":
            out["shape"] = self.shape
            out["desirable"] = sum(1 for r in self.train if r.get("label"))
            out["undesirable"] = len(self.train) - out["desirable"]
        if self.check is not None:
            out["format"] = self.check.format.get("name", "")
            if self.check.warnings:
                out["warnings"] = [str(i) for i in self.check.warnings][:10]
        return out


def _conversational(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


# drops that mean "the answers did not differ", not "the input is broken"
SIGNAL_LESS = {"tie", "chosen_equals_rejected", "empty_answer"}


class NoTrainingSignal(DataError):
    """Every sampled answer tied (or was empty): nothing to learn from, though nothing was malformed."""


def _split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """Train and held-out rows, split BY PROMPT: every row of a prompt (normalised, `normalise_prompt`) lands
    on the same side, so data with several pairs (or thumbs rows) per prompt never shows a held-out prompt
    in training. The share `fraction` applies to the distinct prompts. With one row per prompt this is the
    former per-row split, row for row (same seed, same shuffle)."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(normalise_prompt(prompt_of_row(row)), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    n_held = int(round(len(order) * fraction)) if len(rows) > 4 else 0
    n_held = max(0, min(n_held, len(order) - 1))  # training keeps at least one prompt
    held = [rows[i] for group in order[:n_held] for i in group]
    train = [rows[i] for group in order[n_held:] for i in group]
    return train, held


def _finish(pairs: list[dict], dropped: Counter, config: ExperimentConfig, source: str, tokenizer=None) -> PreferenceData:
    report = None
    if tokenizer is not None and pairs:  # rows training would silently lose at max_length: dropped and counted
        report = _check([(source, i + 1, p) for i, p in enumerate(pairs)], config, tokenizer, source,
                        template_checks=False)
        pairs = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in report.usable]
        dropped = dropped + report.dropped
    if not pairs:
        detail = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        error = NoTrainingSignal if dropped and set(dropped) <= SIGNAL_LESS else DataError
        raise error(f"{source}: no usable preference pairs ({detail})")
    train, held = _split(pairs, config.data.eval_fraction, config.seed)
    return PreferenceData(train=[_conversational(p["prompt"], p["chosen"], p["rejected"]) for p in train],
                          heldout=held, dropped=dropped, source=source, check=report)


def build_builtin(config: ExperimentConfig, base_model=None, tokenizer=None, model_fingerprint: str = "",
                  *, prompt_seed: int | None = None) -> PreferenceData:
    """Verifiable-instruction prompts answered by templates or sampled on-policy; best vs worst by verifier score."""
    d = config.data
    prompt_seed = config.seed if prompt_seed is None else prompt_seed
    prompts = make_prompts(d.n_prompts, prompt_seed, split="train")
    identity = [d.model_dump(mode="json", exclude={"feedback"}), config.seed, model_fingerprint]
    if prompt_seed != config.seed:  # (kept out otherwise: existing caches keep their keys)
        identity.append(prompt_seed)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    cache = config.resolved_cache_dir / "data" / f"builtin-{key}.json"
    cached = read_json(cache)
    if cached is None:
        if d.responder == "template":
            rng = random.Random(config.seed)
            candidates = [[template_answer(p, comply=True, rng=rng), template_answer(p, comply=False, rng=rng)]
                          for p in prompts]
        else:
            from evals.generation import DecodingSettings, generate

            settings = DecodingSettings(max_new_tokens=d.max_new_tokens, temperature=d.sample_temperature,
                                        seed=config.seed, n_samples=d.samples_per_prompt)
            outs = generate(base_model, tokenizer, [p.text for p in prompts], settings,
                            model_fingerprint=model_fingerprint, cache_dir=config.resolved_cache_dir,
                            batch_size=config.eval.batch_size, label="sampling on-policy answers")
            k = d.samples_per_prompt
            candidates = [[o.text for o in outs[i * k : (i + 1) * k]] for i in range(len(prompts))]
        cached = {"prompts": [p.to_dict() for p in prompts], "candidates": candidates}
        write_json_atomic(cache, cached)
    return pairs_from_candidates([VerifiablePrompt.from_dict(p) for p in cached["prompts"]], cached["candidates"],
                                 config, source=f"builtin:verifiable ({d.responder})", tokenizer=tokenizer)


def pairs_from_candidates(prompts: list[VerifiablePrompt], candidates: list[list[str]], config: ExperimentConfig,
                          source: str, tokenizer=None) -> PreferenceData:
    pairs, dropped = best_vs_worst([p.text for p in prompts], candidates,
                                   [[p.score(a) for a in answers] for p, answers in zip(prompts, candidates)])
    return _finish(pairs, dropped, config, source, tokenizer)


def build_round(config: ExperimentConfig, model, tokenizer, model_fingerprint: str, round_index: int) -> PreferenceData:
    """Round k >= 2 of iterative training: data.samples_per_prompt answers per pool prompt sampled from
    round k-1's policy (`model`), ranked by eval.judge, best vs worst. Fresh prompts each round unless
    iteration.fresh_prompts is off."""
    it = config.iteration
    prompt_seed = config.seed + 1000 * (round_index - 1) if it.fresh_prompts else config.seed
    on_policy = config.data.model_copy(update={"source": "builtin:verifiable", "responder": "policy", "feedback": None})
    round_config = config.model_copy(update={"data": on_policy})
    judge = config.eval.judge
    if it.prompt_pool == "builtin:verifiable" and judge.name == "rule":
        # the rule judge's verdicts come from these verifiers: rank by their scores directly
        data = build_builtin(round_config, model, tokenizer, model_fingerprint, prompt_seed=prompt_seed)
        data.source = f"round {round_index}: builtin:verifiable sampled from round {round_index - 1}, ranked by the rule judge"
        return data
    if it.prompt_pool == "builtin:verifiable":
        prompts = [(p.text, p) for p in make_prompts(on_policy.n_prompts, prompt_seed, split="train")]
    else:
        prompts = pool_prompts(it.prompt_pool, on_policy.n_prompts, prompt_seed)
    from evals.generation import DecodingSettings, generate

    settings = DecodingSettings(max_new_tokens=on_policy.max_new_tokens, temperature=on_policy.sample_temperature,
                                seed=config.seed, n_samples=on_policy.samples_per_prompt)
    outs = generate(model, tokenizer, [text for text, _ in prompts], settings, model_fingerprint=model_fingerprint,
                    cache_dir=config.resolved_cache_dir, batch_size=config.eval.batch_size,
                    label=f"round {round_index}: sampling on-policy answers")
    k = on_policy.samples_per_prompt
    candidates = [[o.text for o in outs[i * k : (i + 1) * k]] for i in range(len(prompts))]
    pairs, dropped = rank_by_judge(prompts, candidates, judge, cache_dir=config.resolved_cache_dir)
    return _finish(pairs, dropped, round_config, f"round {round_index}: {it.prompt_pool} judged by {judge.name}",
                   tokenizer)


def _check(rows, config: ExperimentConfig, tokenizer, source: str, template_checks: bool = True,
           row_errors: list[RowError] | None = None):
    """The data check's fatal problems stop here, before any MLflow run or training starts."""
    from harness.variants import VARIANTS

    spec = VARIANTS.get(config.variant) if config.variant in VARIANTS else None
    report = check_rows(rows, source=source, tokenizer=tokenizer,
                        max_length=config.training.max_length if tokenizer is not None else None,
                        variant=config.variant, variant_shape=spec.data_shape if spec else None,
                        template_checks=template_checks, row_errors=row_errors)
    if report.fatal:
        raise report.error()
    return report


def _finish_unpaired(rows: list[ParsedRow], dropped: Counter, config: ExperimentConfig, source: str,
                     report=None) -> PreferenceData:
    """KTO rows as TRL's conversational unpaired format; held-out rows paired by prompt for the chosen-log-prob eval."""
    train, held = _split(rows, config.data.eval_fraction, config.seed)
    by_prompt: dict[str, dict[bool, str]] = {}
    for r in held:
        by_prompt.setdefault(r.prompt, {}).setdefault(bool(r.label), r.completion)
    heldout = [{"prompt": p, "chosen": c[True], "rejected": c[False]} for p, c in by_prompt.items()
               if True in c and False in c]
    return PreferenceData(
        train=[{"prompt": [{"role": "user", "content": r.prompt}],
                "completion": [{"role": "assistant", "content": r.completion}], "label": bool(r.label)} for r in train],
        heldout=heldout, dropped=dropped, source=source, shape="unpaired", check=report)


def load_user_pairs(config: ExperimentConfig, tokenizer=None) -> PreferenceData:
    """The user's data, checked first (`harness data check` runs the same checks): fatal problems raise."""
    source = config.data.source
    errors: list[RowError] = []  # every bad line is reported at once, with the other fatal problems
    rows = read_rows(source, config.data.split, on_error=errors.append)
    if not rows and not errors:
        raise DataError(f"{source}: the data has no rows")
    feedback_dropped: Counter = Counter()
    if config.data.feedback is not None:
        rows, feedback_dropped, now = _select_feedback(rows, config, errors)
        source = f"{source} (feedback as of {now.isoformat(timespec='seconds')})"  # logged with the run's data stats
        if not rows and not errors:
            detail = ", ".join(f"{k}: {v}" for k, v in feedback_dropped.items())
            raise DataError(f"{source}: no feedback rows left after the data.feedback filters ({detail})")
    report = _check(rows, config, tokenizer, source, row_errors=errors)
    report.dropped.update(feedback_dropped)
    if report.shape == "unpaired":
        return _finish_unpaired(report.usable, report.dropped, config, source, report)
    pairs = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in report.usable]
    data = _finish(pairs, report.dropped, config, source)
    data.check = report
    return data


def _select_feedback(rows, config: ExperimentConfig, errors: list) -> tuple[list, Counter, Any]:
    from harness.variants import VARIANTS

    fb = config.data.feedback
    selection = select_feedback(rows, fb, on_error=errors.append)
    as_pairs = fb.as_pairs if fb.as_pairs is not None else VARIANTS.get(config.variant).data_shape == "paired"
    if as_pairs:
        selection = feedback_pairs(selection)
    return selection.rows, selection.dropped, selection.now


def load_preference_data(config: ExperimentConfig, base_model=None, tokenizer=None, model_fingerprint: str = "") -> PreferenceData:
    """Training data, checked: fatal problems raise `DataError` (exit 2) naming file, row and field.

    With a tokenizer, rows that training would silently lose (the prompt fills training.max_length,
    chosen == rejected after truncation) are dropped here and counted in `dropped`.
    """
    if config.data.source == "builtin:verifiable":
        return build_builtin(config, base_model, tokenizer, model_fingerprint)
    if config.data.source.startswith("builtin:"):
        raise DataError(f"data.source: unknown built-in data {config.data.source!r} (known: builtin:verifiable)")
    return load_user_pairs(config, tokenizer)

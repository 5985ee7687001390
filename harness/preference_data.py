"""Preference data: built on-policy from verifiable prompts, or loaded from the user's files.

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
from pathlib import Path
from typing import Any

from harness.atomic_io import read_json, write_json_atomic
from harness.config import ExperimentConfig
from harness.errors import DataError
from harness.verifiable_prompts import VerifiablePrompt, make_prompts, template_answer

ROLES = {"system", "user", "assistant"}


@dataclass
class PreferenceData:
    train: list[dict]  # TRL conversational rows
    heldout: list[dict]  # plain-text pairs {prompt, chosen, rejected} for the chosen-log-prob eval
    dropped: Counter = field(default_factory=Counter)
    source: str = ""

    def stats(self) -> dict[str, Any]:
        return {"source": self.source, "pairs": len(self.train), "heldout_pairs": len(self.heldout),
                "dropped": dict(self.dropped), "dropped_total": sum(self.dropped.values())}


def _conversational(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def _split(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_held = int(round(len(pairs) * fraction)) if len(pairs) > 4 else 0
    held = [pairs[i] for i in order[:n_held]]
    train = [pairs[i] for i in order[n_held:]]
    return train, held


def _finish(pairs: list[dict], dropped: Counter, config: ExperimentConfig, source: str) -> PreferenceData:
    if not pairs:
        detail = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        raise DataError(f"{source}: no usable preference pairs ({detail})")
    train, held = _split(pairs, config.data.eval_fraction, config.seed)
    return PreferenceData(train=[_conversational(p["prompt"], p["chosen"], p["rejected"]) for p in train],
                          heldout=held, dropped=dropped, source=source)


# ------------------------------------------------------------------ built-in data


def build_builtin(config: ExperimentConfig, base_model=None, tokenizer=None, model_fingerprint: str = "") -> PreferenceData:
    """Verifiable-instruction prompts answered by templates or sampled on-policy; best vs worst by verifier score."""
    d = config.data
    prompts = make_prompts(d.n_prompts, config.seed, split="train")
    key = hashlib.sha256(json.dumps([d.model_dump(mode="json"), config.seed, model_fingerprint], sort_keys=True)
                         .encode()).hexdigest()[:24]
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
                                 config, source=f"builtin:verifiable ({d.responder})")


def pairs_from_candidates(prompts: list[VerifiablePrompt], candidates: list[list[str]], config: ExperimentConfig,
                          source: str) -> PreferenceData:
    pairs, dropped = [], Counter()
    for prompt, answers in zip(prompts, candidates):
        scored = [(prompt.score(a), i, a) for i, a in enumerate(answers)]
        best = max(scored, key=lambda s: (s[0], -s[1]))
        worst = min(scored, key=lambda s: (s[0], s[1]))
        if best[0] == worst[0]:
            dropped["tie"] += 1
        elif best[2].strip() == worst[2].strip():
            dropped["chosen_equals_rejected"] += 1
        elif not best[2].strip() or not worst[2].strip():
            dropped["empty_answer"] += 1
        else:
            pairs.append({"prompt": prompt.text, "chosen": best[2], "rejected": worst[2]})
    return _finish(pairs, dropped, config, source)


# ------------------------------------------------------------------ user data


def _read_rows(source: str) -> list[tuple[str, int, dict]]:
    """(file, 1-based row, row) for a JSONL/JSON/Parquet file, a folder of them, or hf:NAME."""
    if source.startswith("hf:"):
        try:
            from datasets import load_dataset

            ds = load_dataset(source[3:], split="train")
        except Exception as exc:  # hub unreachable, unknown name, ...
            raise DataError(f"{source}: could not load the dataset: {exc}") from None
        return [(source, i + 1, dict(r)) for i, r in enumerate(ds)]
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{source}: no .jsonl, .json or .parquet files in the folder")
    rows: list[tuple[str, int, dict]] = []
    for f in files:
        if f.suffix == ".parquet":
            import pandas as pd

            rows += [(str(f), i + 1, r) for i, r in enumerate(pd.read_parquet(f).to_dict("records"))]
            continue
        text = f.read_text("utf-8")
        if f.suffix == ".json" and text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{f}: not valid JSON: {exc}") from None
            rows += [(str(f), i + 1, r) for i, r in enumerate(items)]
            continue
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{f}: row {i + 1}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{f}: row {i + 1}: expected a JSON object, got {type(row).__name__}")
            rows.append((str(f), i + 1, row))
    return rows


def _message_text(value: Any, where: str, field_name: str, expect_role: str | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        for j, m in enumerate(value):
            if m.get("role") not in ROLES:
                raise DataError(f"{where}: field '{field_name}[{j}].role': unknown role {m.get('role')!r} "
                                f"(expected one of {', '.join(sorted(ROLES))})")
            if not isinstance(m.get("content"), str):
                raise DataError(f"{where}: field '{field_name}[{j}].content': must be a string")
        if expect_role and value[-1]["role"] != expect_role:
            raise DataError(f"{where}: field '{field_name}': last message must be from the {expect_role}")
        return value[-1]["content"]
    raise DataError(f"{where}: field '{field_name}': must be a string or a list of messages, got {type(value).__name__}")


def _shared_prefix_prompt(chosen: list[dict] | str, rejected: list[dict] | str) -> tuple[Any, Any, Any]:
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        return chosen[:n], chosen[n:], rejected[n:]
    c, r = str(chosen), str(rejected)
    n = 0
    while n < min(len(c), len(r)) and c[n] == r[n]:
        n += 1
    return c[:n], c[n:], r[n:]


def load_user_pairs(config: ExperimentConfig) -> PreferenceData:
    source = config.data.source
    rows = _read_rows(source)
    if not rows:
        raise DataError(f"{source}: the data has no rows")
    pairs, dropped = [], Counter()
    for file, line, row in rows:
        where = f"{file}: row {line}"
        missing = [k for k in ("chosen", "rejected") if k not in row]
        if missing:
            raise DataError(f"{where}: missing field '{missing[0]}' (paired data needs chosen and rejected"
                            f"{', and usually prompt' if 'prompt' not in row else ''})")
        chosen, rejected = row["chosen"], row["rejected"]
        prompt = row.get("prompt")
        if prompt is None:  # implicit prompt: the shared prefix of chosen and rejected
            prompt, chosen, rejected = _shared_prefix_prompt(chosen, rejected)
        prompt_text = _message_text(prompt, where, "prompt", "user") if prompt else ""
        chosen_text = _message_text(chosen, where, "chosen", "assistant")
        rejected_text = _message_text(rejected, where, "rejected", "assistant")
        if not prompt_text.strip():
            dropped["empty_prompt"] += 1
        elif not chosen_text.strip() or not rejected_text.strip():
            dropped["empty_completion"] += 1
        elif chosen_text.strip() == rejected_text.strip():
            dropped["chosen_equals_rejected"] += 1
        else:
            pairs.append({"prompt": prompt_text, "chosen": chosen_text, "rejected": rejected_text})
    return _finish(pairs, dropped, config, source)


def load_preference_data(config: ExperimentConfig, base_model=None, tokenizer=None, model_fingerprint: str = "") -> PreferenceData:
    if config.data.source == "builtin:verifiable":
        return build_builtin(config, base_model, tokenizer, model_fingerprint)
    if config.data.source.startswith("builtin:"):
        raise DataError(f"data.source: unknown built-in data {config.data.source!r} (known: builtin:verifiable)")
    return load_user_pairs(config)

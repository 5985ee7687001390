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
    shape: str = "paired"  # "unpaired": train rows are KTO's prompt/completion/label
    check: Any = None  # the data check's report (harness.data_check.DataCheckReport), when it ran

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


def _split(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_held = int(round(len(pairs) * fraction)) if len(pairs) > 4 else 0
    held = [pairs[i] for i in order[:n_held]]
    train = [pairs[i] for i in order[n_held:]]
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


# ------------------------------------------------------------------ built-in data


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


def best_vs_worst(prompts: list[str], candidates: list[list[str]], scores: list[list[float]]) -> tuple[list[dict], Counter]:
    """Per prompt, the best-scored answer as chosen and the worst as rejected (the earliest answer wins
    a tie for either place); a prompt whose scores are all equal, or whose two answers are the same
    text or empty, gives no pair and is counted under that reason."""
    pairs, dropped = [], Counter()
    for text, answers, score in zip(prompts, candidates, scores):
        best = max(range(len(answers)), key=lambda i: (score[i], -i))
        worst = min(range(len(answers)), key=lambda i: (score[i], i))
        if score[best] == score[worst]:
            dropped["tie"] += 1
        elif answers[best].strip() == answers[worst].strip():
            dropped["chosen_equals_rejected"] += 1
        elif not answers[best].strip() or not answers[worst].strip():
            dropped["empty_answer"] += 1
        else:
            pairs.append({"prompt": text, "chosen": answers[best], "rejected": answers[worst]})
    return pairs, dropped


# ------------------------------------------------------------------ iterative rounds


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


def rank_by_judge(prompts: list[tuple[str, VerifiablePrompt | None]], candidates: list[list[str]], judge_spec,
                  cache_dir: Path | None = None) -> tuple[list[dict], Counter]:
    """Best vs worst among each prompt's answers by a round robin of pairwise verdicts (both orders,
    so the judge's position bias cancels); equal scores are a tie, dropped and counted."""
    from evals.judges import JudgeItem, build_judge, position_swap

    items, owners = [], []
    for p, ((text, verifier), answers) in enumerate(zip(prompts, candidates)):
        for i in range(len(answers)):
            for j in range(i + 1, len(answers)):
                items.append(JudgeItem(text, answers[i], answers[j], verifier))
                owners.append((p, i, j))
    verdicts = position_swap(build_judge(judge_spec, cache_dir=cache_dir), items).verdicts if items else []
    wins = [[0.0] * len(a) for a in candidates]
    for (p, i, j), v in zip(owners, verdicts):  # preference 1: first (i) wins, 2: second (j), 1.5: tie
        wins[p][i] += 2.0 - v
        wins[p][j] += v - 1.0
    return best_vs_worst([text for text, _ in prompts], candidates, wins)


def pool_prompts(source: str, n: int, seed: int) -> list[tuple[str, None]]:
    texts = []
    for file, line, row in read_rows(source):
        if "prompt" not in row:
            raise RowError(f"{file}: row {line}: missing field 'prompt' (iteration.prompt_pool rows need one)",
                           file=file, row=line, field="prompt", code="missing_field")
        texts.append(_message_text(row["prompt"], file, line, "prompt", "user"))
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if not unique:
        raise DataError(f"{source}: the prompt pool has no prompts")
    rng = random.Random(seed)
    return [(t, None) for t in rng.sample(unique, min(n, len(unique)))]


# ------------------------------------------------------------------ user data


class RowError(DataError):
    """A problem in one row (or one file) of the user's data, with its place kept for reports."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None, code: str = "bad_row"):
        super().__init__(message)
        self.file, self.row, self.field, self.code = file, row, field, code


def _plain(value: Any) -> Any:
    """Parquet/pandas values (numpy arrays, numpy scalars) as plain Python, so message lists stay lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy":
        return _plain(value.tolist()) if hasattr(value, "tolist") else value
    return value


def read_rows(source: str, split: str = "train", on_error=None) -> list[tuple[str, int, dict]]:
    """(file, 1-based row, row) for a JSONL/JSON/Parquet file, a folder of them, or hf:NAME.

    A bad line raises `RowError`; with `on_error`, it is passed there instead and the line skipped
    (the data check and the loader collect every problem and report them together).
    """
    def bad(exc: RowError) -> None:
        if on_error is None:
            raise exc
        on_error(exc)

    if source.startswith("hf:"):
        try:
            from datasets import load_dataset

            ds = load_dataset(source[3:], split=split)
        except Exception as exc:  # hub unreachable, unknown name, ...
            raise DataError(f"{source}: could not load the dataset: {exc}") from None
        return [(source, i + 1, _plain(dict(r))) for i, r in enumerate(ds)]
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".parquet")
                   or p.name.endswith(".jsonl.gz")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{source}: no .jsonl, .jsonl.gz, .json or .parquet files in the folder")
    rows: list[tuple[str, int, dict]] = []
    for f in files:
        if f.suffix == ".parquet":
            import pandas as pd

            try:
                records = pd.read_parquet(f).to_dict("records")
            except Exception as exc:  # not a parquet file, truncated, ...
                raise DataError(f"{f}: not a readable Parquet file ({exc})") from None
            rows += [(str(f), i + 1, _plain(r)) for i, r in enumerate(records)]
            continue
        try:
            text = _read_text(f)
        except UnicodeDecodeError as exc:
            raise DataError(f"{f}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if f.suffix == ".json" and text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{f}: not valid JSON: {exc}") from None
            for i, r in enumerate(items):
                if isinstance(r, dict):
                    rows.append((str(f), i + 1, r))
                else:
                    bad(RowError(f"{f}: row {i + 1}: expected a JSON object, got {type(r).__name__}",
                                 file=str(f), row=i + 1, code="not_an_object"))
            continue
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                bad(RowError(f"{f}: row {i + 1}: not valid JSON ({exc.msg})", file=str(f), row=i + 1, code="bad_json"))
                continue
            if not isinstance(row, dict):
                bad(RowError(f"{f}: row {i + 1}: expected a JSON object, got {type(row).__name__}",
                             file=str(f), row=i + 1, code="not_an_object"))
                continue
            rows.append((str(f), i + 1, row))
    return rows


_read_rows = read_rows  # the former private name


def _read_text(f: Path) -> str:
    """A text file, or a gzipped one (.gz: public datasets such as HH-RLHF ship .jsonl.gz)."""
    if f.suffix != ".gz":
        return f.read_text("utf-8")
    import gzip

    try:
        return gzip.decompress(f.read_bytes()).decode("utf-8")
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: truncated
        raise DataError(f"{f}: not a readable gzip file ({exc})") from None


def _message_text(value: Any, file: str, line: int, field_name: str, expect_role: str | None) -> str:
    where = f"{file}: row {line}"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        for j, m in enumerate(value):
            if m.get("role") not in ROLES:
                raise RowError(f"{where}: field '{field_name}[{j}].role': unknown role {m.get('role')!r} "
                               f"(expected one of {', '.join(sorted(ROLES))})",
                               file=file, row=line, field=f"{field_name}[{j}].role", code="unknown_role")
            if not isinstance(m.get("content"), str):
                raise RowError(f"{where}: field '{field_name}[{j}].content': must be a string"
                               f" (got {type(m.get('content')).__name__})",
                               file=file, row=line, field=f"{field_name}[{j}].content", code="non_text_content")
        if expect_role and value[-1]["role"] != expect_role:
            code = "missing_assistant_turn" if expect_role == "assistant" else "missing_user_turn"
            raise RowError(f"{where}: field '{field_name}': last message must be from the {expect_role}"
                           f" (got {value[-1]['role']!r})", file=file, row=line, field=field_name, code=code)
        return value[-1]["content"]
    raise RowError(f"{where}: field '{field_name}': must be a string or a list of messages, got {type(value).__name__}",
                   file=file, row=line, field=field_name, code="wrong_type")


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


UNPAIRED_COMPLETION_FIELDS = ("completion", "response")  # TRL's unpaired layout; thumbs-feedback logs
UNPAIRED_LABEL_FIELDS = ("label", "thumbs")
_DESIRABLE = {"up", "thumbs_up", "thumbsup", "true", "yes", "good", "desirable", "positive", "1", "\U0001f44d"}
_UNDESIRABLE = {"down", "thumbs_down", "thumbsdown", "false", "no", "bad", "undesirable", "negative", "0", "\U0001f44e"}


def label_value(value: Any, file: str, line: int, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _DESIRABLE | _UNDESIRABLE:
        return value.strip().lower() in _DESIRABLE
    raise RowError(f"{file}: row {line}: field '{field_name}': expected true/false (or \"up\"/\"down\"), got {value!r}",
                   file=file, row=line, field=field_name, code="bad_label")


@dataclass
class ParsedRow:
    """One row of user data, validated and reduced to the texts training uses."""

    file: str
    row: int
    shape: str  # "paired" (prompt/chosen/rejected) or "unpaired" (prompt/completion/label)
    style: str  # "standard" (strings) or "conversational" (message lists)
    implicit_prompt: bool
    prompt: str
    chosen: str = ""
    rejected: str = ""
    completion: str = ""
    label: bool | None = None
    completion_field: str = ""  # unpaired: which column held the completion / the label
    label_field: str = ""
    context_dropped: tuple[str, ...] = ()  # fields whose earlier messages training does not see

    @property
    def completions(self) -> dict[str, str]:
        return {"chosen": self.chosen, "rejected": self.rejected} if self.shape == "paired" \
            else {self.completion_field: self.completion}

    def drop_reason(self) -> tuple[str, str] | None:
        """(reason, field) when training cannot use this row; the reasons are the `dropped` counters."""
        if not self.prompt.strip():
            return "empty_prompt", "prompt"
        for name, text in self.completions.items():
            if not text.strip():
                return "empty_completion", name
        if self.shape == "paired" and self.chosen.strip() == self.rejected.strip():
            return "chosen_equals_rejected", "rejected"
        return None


def _context(value: Any, name: str) -> tuple[str, ...]:
    return (name,) if isinstance(value, list) and len(value) > 1 else ()


def parse_row(file: str, line: int, row: dict) -> ParsedRow:
    """Validate one row; raise `RowError` naming file, row and field. Paired and unpaired (KTO) rows."""
    where = f"{file}: row {line}"
    completion_field = next((k for k in UNPAIRED_COMPLETION_FIELDS if k in row), None)
    if "chosen" not in row and "rejected" not in row and completion_field:
        label_field = next((k for k in UNPAIRED_LABEL_FIELDS if k in row), None)
        for name, present in (("prompt", "prompt" in row), ("label", label_field)):
            if not present:
                raise RowError(f"{where}: missing field '{name}' (unpaired data needs prompt, "
                               f"{completion_field} and label)", file=file, row=line, field=name, code="missing_field")
        prompt, completion = row["prompt"], row[completion_field]
        return ParsedRow(
            file=file, row=line, shape="unpaired",
            style="conversational" if isinstance(completion, list) else "standard", implicit_prompt=False,
            prompt=_message_text(prompt, file, line, "prompt", "user"),
            completion=_message_text(completion, file, line, completion_field, "assistant"),
            label=label_value(row[label_field], file, line, label_field),
            completion_field=completion_field, label_field=label_field,
            context_dropped=_context(prompt, "prompt") + _context(completion, completion_field))
    missing = [k for k in ("chosen", "rejected") if k not in row]
    if missing:
        raise RowError(f"{where}: missing field '{missing[0]}' (paired data needs chosen and rejected"
                       f"{', and usually prompt' if 'prompt' not in row else ''})",
                       file=file, row=line, field=missing[0], code="missing_field")
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    implicit = prompt is None
    if implicit:  # implicit prompt: the shared prefix of chosen and rejected
        prompt, chosen, rejected = _shared_prefix_prompt(chosen, rejected)
    prompt_text = _message_text(prompt, file, line, "prompt", "user") if prompt else ""
    return ParsedRow(
        file=file, row=line, shape="paired", style="conversational" if isinstance(chosen, list) else "standard",
        implicit_prompt=implicit, prompt=prompt_text,
        chosen=_message_text(chosen, file, line, "chosen", "assistant"),
        rejected=_message_text(rejected, file, line, "rejected", "assistant"),
        context_dropped=_context(prompt, "prompt") + _context(chosen, "chosen") + _context(rejected, "rejected"))


def _check(rows, config: ExperimentConfig, tokenizer, source: str, template_checks: bool = True,
           row_errors: list[RowError] | None = None):
    """The data check's fatal problems stop here, before any MLflow run or training starts."""
    from harness.data_check import check_rows
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
    from harness.feedback import feedback_pairs, select_feedback
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

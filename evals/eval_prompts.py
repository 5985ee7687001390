"""The prompts a cell is evaluated on (`eval.prompts`), chosen by the user, and their overlap with training.

    builtin                      the embedded default: `make_prompts(n, seed, split="eval")`, verifiable
                                 instructions kept (the rule judge checks them)
    heldout                      the training data's held-out split (split by prompt, harness.data.loading):
                                 its prompts, deduplicated, at most n (a seeded sample, source order kept)
    PATH                         a JSONL / JSON / Parquet / CSV file (or .jsonl.gz) with a `prompt` or
                                 `instruction` column; every prompt of the file, deduplicated. A row may carry
                                 `instructions` ([[kind, value], ...] as harness.data.verifiable writes them)
                                 for the rule judge
    hf:NAME[:SPLIT]              a hub dataset (datasets.load_dataset; split default "test"), same columns
    {name: alpaca_eval, baseline_outputs: PATH[, baseline_name: NAME]}
                                 AlpacaEval: the instructions of a baseline's model-outputs file (alpaca-eval's
                                 format: `instruction`, `output`, `generator`; JSON list or JSONL, gzip allowed)
                                 with that baseline's answers. The policy is judged against THOSE answers, not
                                 the reference model's, as the leaderboard does; with the 805 instructions in
                                 their order (`is_alpaca_eval_805`) `harness lc-winrate` on the annotations
                                 (`annotation_rows`) can run the leaderboard's own GLM.

The mapping forms `{name: file, path: PATH}` and `{name: hf, dataset: NAME, split: SPLIT}` say the same as
the strings; file, hf and alpaca_eval take `limit: N` (a seeded sample of N prompts, source order kept).
User sets are used whole otherwise ("evaluates on exactly that file's prompts"); `n` (eval.n_prompts)
caps only builtin and heldout, which are generated or may be large.

Overlap: an eval prompt that also trains the policy measures memory, not preference learning. Prompts are
compared by `normalise_prompt` (casefold, punctuation stripped, whitespace collapsed); any overlap is a
config error (`PromptOverlapError`, naming the count and two examples) unless `eval.allow_prompt_overlap`.

The pipeline calls `prepare_eval_prompts(config, data)` once per cell, before training.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.atomic_io import write_bytes_atomic, write_text_atomic
from harness.data.rows import RowError, normalise_prompt, prompt_of_row
from harness.data.verifiable import Instruction, VerifiablePrompt, make_prompts
from harness.errors import ConfigError

PROMPT_FIELDS = ("prompt", "instruction")  # the first one a row has is its prompt
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz", ".csv.gz")
HF_DEFAULT_SPLIT = "test"
# sha256 of json.dumps(the 805 AlpacaEval instructions in their order, ensure_ascii=False), computed from
# alpaca-eval's gpt4_1106_preview model_outputs (the eval set): recognises the leaderboard's set, in the
# order the official LC recipe looks instruction difficulty up by, without shipping its (CC BY-NC) text.
ALPACA_EVAL_INSTRUCTIONS_SHA256 = "e4356cd997a280afd66c7dd3f9d44a151d2e94a3d4c2b67ab5d364a14404ae26"
ALPACA_EVAL_N = 805
INSTRUCTION_VALUE_TYPES = {"max_words": int, "bullets": int, "keyword": str, "ending": str,
                           "lowercase": type(None), "no_commas": type(None)}


class EvalPromptError(RowError):
    """An eval prompt set that cannot be used: the message names the file, row and field (exit 2)."""


class PromptOverlapError(ConfigError):
    """Eval prompts that also appear in the training data (by normalised text), not explicitly allowed."""


# ---------------------------------------------------------------- the prompts


@dataclass(frozen=True)
class EvalPrompt(VerifiablePrompt):
    """A prompt from a user's set: `text` is the prompt as given; `instructions` (maybe none) are what the
    rule judge can check. A VerifiablePrompt, so it goes wherever the built-in prompts go
    (`JudgeItem(p.text, ..., verifier=p)`)."""

    prompt: str = ""

    @property
    def text(self) -> str:
        return self.prompt


@dataclass(frozen=True)
class BaselineAnswer:
    """A named baseline's answer, shaped like a generation (evals.generation.Completion) where the win-rate
    eval reads it: written elsewhere, so never cut at this run's max_new_tokens."""

    text: str
    hit_limit: bool = False


@dataclass(frozen=True)
class EvalPromptSet:
    items: tuple[VerifiablePrompt, ...]  # builtin: the VerifiablePrompts themselves; else EvalPrompt
    source: str  # what was read, in words (logged with the run)
    content_hash: str  # sha256 of the prompts, their instructions and the baseline answers
    baseline_outputs: tuple[str, ...] | None = None  # alpaca_eval: the named baseline's answers, same order
    baseline_name: str | None = None
    rows: tuple[int, ...] = ()  # 1-based row of each prompt in its source
    n_available: int = 0  # distinct prompts the source held, before any cap
    duplicates_dropped: int = 0  # rows whose prompt repeated an earlier one (normalised)
    is_alpaca_eval_805: bool = False  # exactly AlpacaEval's 805 instructions in their order
    overlap_count: int | None = None  # eval prompts also in training (None: not checked)
    snapshot: Path | None = None  # the prompts as evaluated, written under cache_dir

    @property
    def prompts(self) -> list[str]:
        return [p.text for p in self.items]

    @property
    def has_instructions(self) -> bool:
        """Every prompt carries verifiable instructions (what the rule judge needs)."""
        return all(p.instructions for p in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def baseline_answers(self) -> list[BaselineAnswer] | None:
        """The named baseline's answers, to judge the policy against instead of the reference's generations."""
        return None if self.baseline_outputs is None else [BaselineAnswer(t) for t in self.baseline_outputs]

    def describe(self) -> dict[str, Any]:
        """What the run records about its eval set (params/tags; small)."""
        out: dict[str, Any] = {"source": self.source, "n": len(self), "content_hash": self.content_hash,
                               "n_available": self.n_available, "duplicates_dropped": self.duplicates_dropped}
        if self.baseline_name is not None:
            out |= {"baseline": self.baseline_name, "alpaca_eval_805": self.is_alpaca_eval_805}
        if self.overlap_count is not None:
            out["overlap_with_training"] = self.overlap_count
        return out


def _content_hash(items: Sequence[VerifiablePrompt], baseline: Sequence[str] | None) -> str:
    payload = [[p.text, [[i.kind, i.value] for i in p.instructions]] for p in items]
    return hashlib.sha256(json.dumps({"prompts": payload, "baseline": list(baseline) if baseline is not None else None},
                                     sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---------------------------------------------------------------- the spec


@dataclass(frozen=True)
class PromptSpec:
    kind: str  # builtin | heldout | file | hf | alpaca_eval
    path: Path | None = None  # file; alpaca_eval: the baseline outputs
    dataset: str = ""  # hf
    split: str = HF_DEFAULT_SPLIT  # hf
    baseline_name: str | None = None  # alpaca_eval
    limit: int | None = None
    raw: Any = field(default=None, compare=False)

    def describe(self) -> str:
        if self.kind in ("builtin", "heldout"):
            return self.kind
        if self.kind == "hf":
            return f"hf:{self.dataset}:{self.split}"
        if self.kind == "alpaca_eval":
            return f"alpaca_eval (baseline outputs {self.path})"
        return str(self.path)


_MAPPING_KEYS = {"builtin": set(), "heldout": set(), "file": {"path", "limit"}, "hf": {"dataset", "split", "limit"},
                 "alpaca_eval": {"baseline_outputs", "baseline_name", "limit"}}


def parse_prompt_spec(spec: Any, *, where: str = "eval.prompts") -> PromptSpec:
    """`eval.prompts` as written (a string or a mapping) -> PromptSpec, or ConfigError naming the field.
    Checks the form only; files are checked by `prompt_spec_problems` / read by `load_eval_prompts`."""
    if isinstance(spec, PromptSpec):
        return spec
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if text in ("builtin", "heldout"):
            return PromptSpec(text, raw=spec)
        if text == "alpaca_eval":
            raise ConfigError(f"{where}: alpaca_eval needs the baseline's outputs: "
                              "{name: alpaca_eval, baseline_outputs: PATH} (alpaca-eval's model_outputs.json format)")
        if text.startswith("hf:"):
            name, _, split = text[3:].partition(":")
            if not name:
                raise ConfigError(f"{where}: hf: needs a dataset name (hf:NAME or hf:NAME:SPLIT)")
            return PromptSpec("hf", dataset=name, split=split or HF_DEFAULT_SPLIT, raw=spec)
        if not text:
            raise ConfigError(f"{where}: empty (builtin, heldout, a file, hf:NAME[:SPLIT], or "
                              "{name: alpaca_eval, baseline_outputs: PATH})")
        return PromptSpec("file", path=Path(text).expanduser(), raw=spec)
    if isinstance(spec, Mapping):
        name = spec.get("name")
        if name not in _MAPPING_KEYS:
            raise ConfigError(f"{where}.name: expected one of {', '.join(_MAPPING_KEYS)} (got {name!r})")
        extra = set(spec) - {"name"} - _MAPPING_KEYS[name]
        if extra:
            raise ConfigError(f"{where}: unknown field(s) for {name}: {', '.join(sorted(map(str, extra)))} "
                              f"(known: {', '.join(sorted(_MAPPING_KEYS[name])) or 'none'})")
        limit = spec.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ConfigError(f"{where}.limit: a positive number of prompts (got {limit!r})")

        def text_field(key: str, required: bool) -> str | None:
            value = spec.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise ConfigError(f"{where}.{key}: " + ("field required" if value is None else f"expected a "
                                                        f"non-empty string (got {value!r})"))
            return str(value)

        if name in ("builtin", "heldout"):
            return PromptSpec(name, raw=spec)
        if name == "file":
            return PromptSpec("file", path=Path(text_field("path", True)).expanduser(), limit=limit, raw=spec)
        if name == "hf":
            return PromptSpec("hf", dataset=text_field("dataset", True),
                              split=text_field("split", False) or HF_DEFAULT_SPLIT, limit=limit, raw=spec)
        return PromptSpec("alpaca_eval", path=Path(text_field("baseline_outputs", True)).expanduser(),
                          baseline_name=text_field("baseline_name", False), limit=limit, raw=spec)
    raise ConfigError(f"{where}: expected a string or a mapping (got {type(spec).__name__})")


def prompt_spec_problems(spec: Any, *, judge_name: str = "rule", data_source: str = "builtin:verifiable",
                         where: str = "eval.prompts") -> list[str]:
    """What harness.config reports at load time: the spec's form, the file's existence and type, and a
    judge that cannot judge the set (the rule judge needs verifiable instructions)."""
    try:
        parsed = parse_prompt_spec(spec, where=where)
    except ConfigError as exc:
        return [str(exc)]
    problems = []
    if parsed.path is not None:
        field_name = "baseline_outputs" if parsed.kind == "alpaca_eval" else "path"
        label = where if isinstance(parsed.raw, (str, Path)) else f"{where}.{field_name}"
        if not parsed.path.exists():
            problems.append(f"{label}: {parsed.path}: no such file")
        elif not parsed.path.is_file():
            problems.append(f"{label}: {parsed.path}: is a folder, not a file")
        elif not parsed.path.name.endswith(FILE_SUFFIXES):
            problems.append(f"{label}: {parsed.path}: unknown file type (expected {', '.join(FILE_SUFFIXES)})")
    if judge_name == "rule":
        if parsed.kind in ("hf", "alpaca_eval"):
            problems.append(f"{where}: the rule judge checks verifiable instructions, which {parsed.describe()} "
                            "does not carry; use an llm or reward_model judge (eval.judge)")
        elif parsed.kind == "heldout" and data_source != "builtin:verifiable":
            problems.append(f"{where}: heldout prompts of {data_source} carry no verifiable instructions for the "
                            "rule judge; use an llm or reward_model judge (eval.judge)")
    return problems


# ---------------------------------------------------------------- loading


def load_eval_prompts(spec: Any, *, n: int | None, seed: int, heldout: Iterable[Any] | None = None,
                      cache_dir: Path | None = None,
                      verifiers: Mapping[str, VerifiablePrompt] | None = None) -> EvalPromptSet:
    """The eval prompts `spec` names (see the module doc).

    n: at most this many prompts for builtin (exactly n) and heldout; user sets are used whole unless the
    spec says `limit`. seed: builtin prompts and any sample. heldout: the training data's held-out rows
    (PreferenceData.heldout: dicts with a prompt; or PreferenceData itself). cache_dir: where the resolved
    prompts are written (`eval_prompts/<hash>.jsonl`) for the record. verifiers: verifiable instructions by
    exact prompt text, for prompts whose source carries none (the held-out split of built-in data).
    Bad input raises an EvalPromptError (or ConfigError for the spec itself) naming file, row and field."""
    parsed = parse_prompt_spec(spec)
    if parsed.kind == "builtin":
        if n is None or n <= 0:
            raise ConfigError(f"eval.n_prompts: builtin prompts need a positive count (got {n!r})")
        made = make_prompts(n, seed, split="eval")
        result = EvalPromptSet(items=tuple(made), source=f"builtin:verifiable (eval split, seed {seed})",
                               content_hash=_content_hash(made, None), rows=tuple(range(1, n + 1)), n_available=n)
        return _snapshot(result, cache_dir)
    if parsed.kind == "heldout":
        rows = _heldout_rows(heldout)
        texts = [(i + 1, prompt_of_row(r)) for i, r in enumerate(rows)]
        items, kept_rows, dup = _dedupe([(row, text, ()) for row, text in texts if text.strip()], verifiers)
        if not items:
            raise ConfigError("eval.prompts: heldout: the training data has no held-out prompts (data.eval_fraction "
                              "is 0, or the data has too few prompts to hold any out)")
        available = len(items)
        items, kept_rows = _sample(items, kept_rows, n, seed)
        result = EvalPromptSet(items=tuple(items), source="heldout split of the training data",
                               content_hash=_content_hash(items, None), rows=tuple(kept_rows),
                               n_available=available, duplicates_dropped=dup)
        return _snapshot(result, cache_dir)
    if parsed.kind == "alpaca_eval":
        return _snapshot(_load_alpaca_eval(parsed, seed), cache_dir)
    return _snapshot(_load_user_prompts(parsed, seed, verifiers), cache_dir)


def _heldout_rows(heldout: Any) -> list:
    if heldout is None:
        raise ConfigError("eval.prompts: heldout needs the training data's held-out split (none was given)")
    return list(getattr(heldout, "heldout", heldout))


def _dedupe(entries: list[tuple[int, str, tuple[Instruction, ...]]],
            verifiers: Mapping[str, VerifiablePrompt] | None) -> tuple[list[VerifiablePrompt], list[int], int]:
    """First occurrence of each normalised prompt, as EvalPrompt (with the row's instructions, else those
    `verifiers` knows for the exact text); returns (items, their rows, duplicates dropped)."""
    seen: set[str] = set()
    items, rows, dup = [], [], 0
    for row, text, instructions in entries:
        key = normalise_prompt(text)
        if key in seen:
            dup += 1
            continue
        seen.add(key)
        if not instructions and verifiers and text in verifiers:
            instructions = tuple(verifiers[text].instructions)
        items.append(EvalPrompt(topic=text, instructions=tuple(instructions), prompt=text))
        rows.append(row)
    return items, rows, dup


def _sample(items: list, rows: list[int], n: int | None, seed: int, *others: list) -> tuple:
    """At most n of them, a seeded sample in source order (a file sorted by category stays unbiased)."""
    if n is None or len(items) <= n:
        return (items, rows, *others)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return ([items[i] for i in keep], [rows[i] for i in keep], *[[o[i] for i in keep] for o in others])


def _read_table(spec: PromptSpec, path: Path) -> list[tuple[str, int, dict]]:
    """(file, 1-based row, row) of a file, or of an hf dataset."""
    from harness.data.rows import read_rows

    if spec.kind == "hf":
        try:
            return read_rows(f"hf:{spec.dataset}", spec.split)
        except RowError:
            raise
        except Exception as exc:  # DataError from read_rows: offline, unknown name, ...
            raise EvalPromptError(f"eval.prompts: {exc} (an offline machine cannot reach the hub: download the "
                                  "dataset elsewhere and point eval.prompts at a file)", file=f"hf:{spec.dataset}") \
                from None
    if not path.is_file():
        raise EvalPromptError(f"{path}: no such file", file=str(path))
    if path.name.endswith((".csv", ".csv.gz")):
        import pandas as pd

        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:  # not CSV, not UTF-8, truncated gzip
            raise EvalPromptError(f"{path}: not a readable CSV file ({str(exc).strip()[:200]})", file=str(path)) \
                from None
        return [(str(path), i + 2, row) for i, row in enumerate(frame.to_dict("records"))]  # row 1: the header
    if path.name.endswith(".json.gz"):  # alpaca-eval's model_outputs.json, gzipped (read_rows knows .jsonl.gz)
        import gzip

        try:
            items = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
        except Exception as exc:
            raise EvalPromptError(f"{path}: not a readable gzipped JSON file ({str(exc)[:200]})", file=str(path)) \
                from None
        if not isinstance(items, list):
            raise EvalPromptError(f"{path}: expected a JSON list of rows", file=str(path))
        for i, r in enumerate(items):
            if not isinstance(r, dict):
                raise EvalPromptError(f"{path}: row {i + 1}: expected a JSON object, got {type(r).__name__}",
                                      file=str(path), row=i + 1)
        return [(str(path), i + 1, r) for i, r in enumerate(items)]
    return read_rows(str(path))


def _text_field(file: str, row: int, record: dict, names: Sequence[str], what: str) -> tuple[str, str]:
    name = next((k for k in names if k in record), None)
    where = f"{file}: row {row}"
    if name is None:
        raise EvalPromptError(f"{where}: missing field {' or '.join(repr(k) for k in names)} ({what})",
                              file=file, row=row, field=names[0], code="missing_field")
    value = record[name]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "user":
        value = value[0].get("content")  # one user message, conversational style
    if not isinstance(value, str):
        raise EvalPromptError(f"{where}: field '{name}': expected a string (or one user message), got "
                              f"{type(value).__name__}", file=file, row=row, field=name, code="wrong_type")
    if not value.strip():
        raise EvalPromptError(f"{where}: field '{name}': empty", file=file, row=row, field=name, code="empty")
    return name, value


def _instructions(file: str, row: int, record: dict) -> tuple[Instruction, ...]:
    value = record.get("instructions")
    if value is None or (isinstance(value, float) and value != value):  # absent, or an empty CSV/Parquet cell
        return ()
    if isinstance(value, str):  # CSV: the list as JSON text
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            pass
    bad = (f"{file}: row {row}: field 'instructions': expected [[kind, value], ...] with kind one of "
           f"{', '.join(INSTRUCTION_VALUE_TYPES)}")
    if not isinstance(value, list):
        raise EvalPromptError(f"{bad} (got {value!r})"[:300], file=file, row=row, field="instructions")
    out = []
    for j, entry in enumerate(value):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] in INSTRUCTION_VALUE_TYPES):
            raise EvalPromptError(f"{bad} (item {j}: {entry!r})"[:300], file=file, row=row, field=f"instructions[{j}]")
        kind, arg = entry
        want = INSTRUCTION_VALUE_TYPES[kind]
        if isinstance(arg, bool) or not isinstance(arg, want) or (want is int and arg <= 0):
            raise EvalPromptError(f"{file}: row {row}: field 'instructions[{j}]': {kind} takes "
                                  f"{'a positive integer' if want is int else 'a string' if want is str else 'no value (null)'}"
                                  f" (got {arg!r})", file=file, row=row, field=f"instructions[{j}]")
        out.append(Instruction(kind, arg))
    return tuple(out)


def _load_user_prompts(spec: PromptSpec, seed: int, verifiers: Mapping[str, VerifiablePrompt] | None) -> EvalPromptSet:
    table = _read_table(spec, spec.path or Path())
    if not table:
        where = spec.describe()
        raise EvalPromptError(f"{where}: no rows", file=where)
    entries = []
    for file, row, record in table:
        _, text = _text_field(file, row, record, PROMPT_FIELDS, "the eval prompt")
        entries.append((row, text, _instructions(file, row, record)))
    items, rows, dup = _dedupe(entries, verifiers)
    available = len(items)
    items, rows = _sample(items, rows, spec.limit, seed)
    source = spec.describe() + (f" (a seeded sample of {len(items)} of {available})" if len(items) < available else "")
    return EvalPromptSet(items=tuple(items), source=source, content_hash=_content_hash(items, None), rows=tuple(rows),
                         n_available=available, duplicates_dropped=dup)


def _load_alpaca_eval(spec: PromptSpec, seed: int) -> EvalPromptSet:
    """Instructions and a baseline's answers from its model-outputs file, rows kept in order and never
    deduplicated (the official LC recipe looks instruction difficulty up by row position)."""
    table = _read_table(spec, spec.path)
    if not table:
        raise EvalPromptError(f"{spec.path}: no rows", file=str(spec.path))
    items, outputs, rows, generators = [], [], [], set()
    for file, row, record in table:
        _, text = _text_field(file, row, record, ("instruction", "prompt"), "the AlpacaEval instruction")
        if "output" not in record:
            raise EvalPromptError(f"{file}: row {row}: missing field 'output' (the baseline's answer)", file=file,
                                  row=row, field="output", code="missing_field")
        if not isinstance(record["output"], str):
            raise EvalPromptError(f"{file}: row {row}: field 'output': expected a string, got "
                                  f"{type(record['output']).__name__}", file=file, row=row, field="output",
                                  code="wrong_type")
        if spec.baseline_name is None and isinstance(record.get("generator"), str):
            generators.add(record["generator"])
        items.append(EvalPrompt(topic=text, prompt=text))
        outputs.append(record["output"])
        rows.append(row)
    if len(generators) > 1:
        raise EvalPromptError(f"{spec.path}: field 'generator': several models' outputs in one file "
                              f"({', '.join(sorted(generators))}); a baseline is one model", file=str(spec.path),
                              field="generator")
    name = spec.baseline_name or (next(iter(generators)) if generators else spec.path.name.split(".")[0])
    texts = [p.text for p in items]
    complete = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest() == \
        ALPACA_EVAL_INSTRUCTIONS_SHA256
    available = len(items)
    items, rows, outputs = _sample(items, rows, spec.limit, seed, outputs)
    source = f"alpaca_eval: {available} instructions with {name}'s outputs ({spec.path})" + (
        f", a seeded sample of {len(items)}" if len(items) < available else "")
    return EvalPromptSet(items=tuple(items), source=source, content_hash=_content_hash(items, outputs),
                         baseline_outputs=tuple(outputs), baseline_name=name, rows=tuple(rows), n_available=available,
                         is_alpaca_eval_805=complete and len(items) == ALPACA_EVAL_N)


def _snapshot(prompt_set: EvalPromptSet, cache_dir: Path | None) -> EvalPromptSet:
    """Write the prompts as evaluated (one JSON line each, with instructions and baseline answer) under
    cache_dir/eval_prompts/, content-addressed, so a run can log exactly what it was measured on."""
    if cache_dir is None:
        return prompt_set
    path = Path(cache_dir) / "eval_prompts" / f"{prompt_set.content_hash[:24]}.jsonl"
    if not path.is_file():
        lines = []
        for k, p in enumerate(prompt_set.items):
            row: dict[str, Any] = {"prompt": p.text, "row": prompt_set.rows[k] if prompt_set.rows else k + 1,
                                   "instructions": [[i.kind, i.value] for i in p.instructions]}
            if prompt_set.baseline_outputs is not None:
                row["baseline_output"] = prompt_set.baseline_outputs[k]
            lines.append(json.dumps(row, ensure_ascii=False))
        write_text_atomic(path, "\n".join(lines) + "\n")
    return replace(prompt_set, snapshot=path)


# ---------------------------------------------------------------- overlap with training


def prompt_overlap(eval_prompts: Iterable[Any], train_prompts: Iterable[Any]) -> tuple[int, list[str]]:
    """(how many eval prompts also occur among the training prompts, up to two of them as written), compared
    by `normalise_prompt`. Either side may hold strings, VerifiablePrompts, or preference rows (a dict with
    `prompt`, conversational or not); an EvalPromptSet counts as its prompts."""
    train = {normalise_prompt(_as_text(p)) for p in train_prompts}
    train.discard("")
    hits = [text for text in map(_as_text, eval_prompts) if normalise_prompt(text) in train]
    return len(hits), hits[:2]


def _as_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, VerifiablePrompt):
        return item.text
    return prompt_of_row(item)


def training_prompts(data: Any) -> list[str]:
    """The prompts the policy trains on (PreferenceData.train, conversational or KTO rows)."""
    return [prompt_of_row(r) for r in getattr(data, "train", data)]


def check_prompt_overlap(prompt_set: EvalPromptSet, train_prompts: Iterable[Any], *, allow: bool = False) -> int:
    """The overlap count; PromptOverlapError (config error, exit 2) when there is any and it is not allowed."""
    count, examples = prompt_overlap(prompt_set.items, train_prompts)
    if count and not allow:
        shown = "; ".join(repr(e[:120] + ("..." if len(e) > 120 else "")) for e in examples)
        raise PromptOverlapError(
            f"eval.prompts: {count} of {len(prompt_set)} eval prompts also occur in the training data (compared "
            f"casefolded, punctuation and spacing ignored), e.g. {shown}: the win rate on them measures memory, "
            "not preference learning. Remove them from one side, or set eval.allow_prompt_overlap: true")
    return count


# ---------------------------------------------------------------- what the pipeline calls


def prepare_eval_prompts(config: Any, data: Any = None) -> EvalPromptSet:
    """The cell's eval prompts (config.eval.prompts), checked against its training data: call once per cell,
    after the preference data is built and before training.

    - builtin: make_prompts(eval.n_prompts, seed, split="eval"), exactly as before;
    - heldout: data.heldout's prompts (at most eval.n_prompts); for builtin:verifiable data their
      verifiable instructions are recovered, so the rule judge can judge them;
    - a rule judge on prompts without instructions is a config error (it could only tie);
    - overlap with data.train (normalised text) is a PromptOverlapError unless eval.allow_prompt_overlap;
      the count is kept on the result (`overlap_count`).
    """
    e = config.eval
    verifiers = None
    if config.data.source == "builtin:verifiable":  # the texts the built-in training prompts have
        verifiers = {p.text: p for p in make_prompts(config.data.n_prompts, config.seed, split="train")}
    heldout = getattr(data, "heldout", None) if data is not None else None
    prompt_set = load_eval_prompts(getattr(e, "prompts", "builtin"), n=e.n_prompts, seed=config.seed,
                                   heldout=heldout, cache_dir=config.resolved_cache_dir, verifiers=verifiers)
    judge_name = e.judge if isinstance(e.judge, str) else getattr(e.judge, "name", None)
    if judge_name == "rule" and not prompt_set.has_instructions:
        missing = next(k for k, p in enumerate(prompt_set.items) if not p.instructions)
        row = prompt_set.rows[missing] if prompt_set.rows else missing + 1
        raise ConfigError(f"eval.prompts: {prompt_set.source}: row {row}: field 'instructions': the rule judge needs "
                          f"verifiable instructions on every eval prompt ({sum(not p.instructions for p in prompt_set.items)}"
                          f" of {len(prompt_set)} have none); add them, or use an llm or reward_model judge")
    if data is not None:
        count = check_prompt_overlap(prompt_set, training_prompts(data),
                                     allow=bool(getattr(e, "allow_prompt_overlap", False)))
        prompt_set = replace(prompt_set, overlap_count=count)
    return prompt_set


# ---------------------------------------------------------------- annotations (alpaca-eval's format)


def annotation_rows(prompt_set: EvalPromptSet, policy_outputs: Sequence[str], verdicts: Sequence[float | None], *,
                    policy_name: str, reference_outputs: Sequence[str] | None = None,
                    reference_name: str = "reference") -> list[dict[str, Any]]:
    """The judged pairs in alpaca-eval's annotation format, in prompt order: output_1 the baseline (the named
    baseline's answers when the set has them, else `reference_outputs`), output_2 the policy, preference the
    position-swapped verdict (1 baseline wins, 2 policy wins, 1.5 tie). `harness lc-winrate` reads them; with
    `is_alpaca_eval_805`, `--instruction-difficulty` and `--gamed-rows` give the leaderboard's LC. A prompt
    with no verdict (a sequential eval stopped before judging it) has no row."""
    baseline = prompt_set.baseline_outputs if prompt_set.baseline_outputs is not None else reference_outputs
    if baseline is None:
        raise ValueError("annotation_rows: the set has no baseline outputs; pass reference_outputs")
    name = prompt_set.baseline_name or reference_name
    n = len(prompt_set)
    if not len(baseline) == len(policy_outputs) == len(verdicts) == n:
        raise ValueError(f"annotation_rows: {n} prompts, {len(baseline)} baseline outputs, {len(policy_outputs)} "
                         f"policy outputs, {len(verdicts)} verdicts")
    return [{"instruction": p, "output_1": b, "output_2": o, "preference": float(v), "generator_1": name,
             "generator_2": policy_name}
            for p, b, o, v in zip(prompt_set.prompts, baseline, policy_outputs, verdicts) if v is not None]


def write_annotations(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """JSONL (gzipped when the name ends in .gz), written atomically."""
    text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
    path = Path(path)
    if path.name.endswith(".gz"):
        import gzip

        return write_bytes_atomic(path, gzip.compress(text.encode("utf-8"), mtime=0))
    return write_text_atomic(path, text)

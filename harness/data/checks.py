"""Preference data that cannot silently poison a run: `harness data check` and the checks before training.

`check_source` reads a file, a folder or `hf:NAME` with the loader's own row reader
(`harness.data.rows.read_rows` / `parse_row`) and reports the format (standard or
conversational, paired or unpaired, implicit prompt), row counts, empty and non-text fields,
duplicates, chosen == rejected (as text, as tokens, and after truncation at max_length),
truncation rates, chat-template problems (a template already applied: double BOS; a missing
assistant turn), chosen-vs-rejected length statistics and KTO label balance.

Every problem is an `Issue` with a severity (fatal / warning) and a place (file, row, field).
`load_preference_data` runs the same `check_rows` before every training and raises on fatal
problems; the rows it drops are the report's `dropped` counters, logged to MLflow and shown
in the HTML report.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as _field
from statistics import mean
from typing import Any, Iterable

from harness.data.rows import ParsedRow, RowError, parse_row, read_rows
from harness.errors import DataError

FATAL = "fatal"


WARNING = "warning"


# Chat-template markers of common model families: text that already starts with one of these
# had a template applied before; training applies the template again (double BOS / double template).
GENERIC_TEMPLATE_MARKERS = (
    "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>", "[INST]",
    "<|user|>", "<|assistant|>", "<|system|>", "<start_of_turn>", "<end_of_turn>", "<|endoftext|>",
)


LENGTH_BIAS_SHARE = 0.7  # chosen longer than rejected in more than this share of pairs: a warning


LENGTH_BIAS_RATIO = 1.5  # or a mean chosen/rejected length ratio beyond this (or below its inverse)


LABEL_MINORITY_SHARE = 0.1  # KTO: a label class below this share is a warning (one class is fatal)


COMPLETION_TRUNCATION_WARN = 0.2  # completions cut by max_length in more than this share of rows


MAX_EXAMPLES = 5  # places kept per issue


@dataclass
class Issue:
    severity: str  # FATAL or WARNING
    code: str
    message: str  # names its place: "FILE: row N: field 'F': ..."
    file: str | None = None
    row: int | None = None
    field: str | None = None
    count: int = 1  # rows with this problem
    examples: list[str] = _field(default_factory=list)  # more places, "FILE: row N (field F)"

    @property
    def place(self) -> str:
        parts = [self.file or ""]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ": ".join(p for p in parts if p)

    @property
    def problem(self) -> str:
        """The message without its place (for tables with a place column)."""
        for prefix in (self.place, self.file or ""):
            if prefix and self.message.startswith(prefix + ": "):
                return self.message[len(prefix) + 2 :]
        return self.message

    def __str__(self) -> str:
        return self.message + (f" ({self.count} rows)" if self.count > 1 else "")

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message, "file": self.file,
                "row": self.row, "field": self.field, "count": self.count, "examples": self.examples}


class _Issues:
    """Issues aggregated by (severity, code): the first place in full, a count, a few more places."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Issue] = {}

    def add(self, severity: str, code: str, message: str, file: str | None = None, row: int | None = None,
            field_name: str | None = None, count: int = 1) -> None:
        key = (severity, code)
        if key not in self.by_key:
            self.by_key[key] = Issue(severity, code, message, file, row, field_name, count)
            return
        issue = self.by_key[key]
        issue.count += count
        if len(issue.examples) < MAX_EXAMPLES and row is not None:
            issue.examples.append(f"{file}: row {row}" + (f" (field '{field_name}')" if field_name else ""))

    def list(self) -> list[Issue]:
        # fatal first; within a severity, row-level problems (the causes) before dataset-level ones
        return sorted(self.by_key.values(), key=lambda i: (i.severity != FATAL, i.row is None, i.file or "", i.row or 0))

    def has_fatal_rows(self) -> bool:
        return any(i.severity == FATAL and i.row is not None for i in self.by_key.values())


@dataclass
class DataCheckReport:
    source: str
    files: list[str]
    format: dict[str, Any]  # name, shape, style, prompt (explicit/implicit), label_field
    rows: int  # rows read, including the ones that failed
    usable_rows: int  # rows training gets
    counts: dict[str, int]  # empty fields, non-text fields, duplicates, chosen == rejected, ...
    dropped: Counter  # what training drops, by reason (the loader's `dropped`)
    lengths: dict[str, Any]  # chosen vs rejected: share chosen longer, mean ratio (chars, tokens)
    labels: dict[str, Any] | None  # unpaired data: desirable / undesirable counts and share
    tokenization: dict[str, Any] | None  # with a tokenizer: equality after tokenization/truncation, rates
    issues: list[Issue]
    usable: list[ParsedRow] = _field(default_factory=list, repr=False)  # for the loader, not reported
    offpolicy: dict[str, float] | None = None  # with --model: evals.offpolicy_gap's data/* figures

    @property
    def shape(self) -> str:
        return self.format.get("shape", "paired")

    @property
    def fatal(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == FATAL]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.fatal

    def error(self) -> DataError:
        """The fatal problems as one `DataError` (exit 2), each naming its place."""
        fatal = self.fatal
        if len(fatal) == 1:
            return DataError(str(fatal[0]))
        return DataError(f"{self.source}: {len(fatal)} fatal problems in the data "
                         f"(`harness data check {self.source}` shows the full report)", [str(i) for i in fatal])

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "files": self.files, "format": self.format, "rows": self.rows,
                "usable_rows": self.usable_rows, "counts": self.counts, "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()), "lengths": self.lengths, "labels": self.labels,
                "tokenization": self.tokenization, "ok": self.ok,
                "fatal": len(self.fatal), "warnings": len(self.warnings),
                "issues": [i.to_dict() for i in self.issues], "offpolicy": self.offpolicy}


def template_markers(tokenizer=None) -> tuple[str, ...]:
    """Text that the chat template adds: the tokenizer's BOS and the special tokens its template renders."""
    markers = set(GENERIC_TEMPLATE_MARKERS)
    if tokenizer is not None:
        bos = getattr(tokenizer, "bos_token", None)
        if isinstance(bos, str) and bos:
            markers.add(bos)
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], tokenize=False)
        except Exception:  # no chat template: reported separately
            rendered = ""
        for tok in getattr(tokenizer, "all_special_tokens", []) or []:
            if isinstance(tok, str) and tok and tok in rendered:
                markers.add(tok)
    return tuple(sorted(markers, key=len, reverse=True))


def _shares(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _batched_ids(tokenizer, texts: list[str], batch: int = 512) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        out += tokenizer(texts[i : i + batch], add_special_tokens=False)["input_ids"]
    return out


def _tokenize_rows(rows: list[ParsedRow], tokenizer) -> list[dict[str, Any]]:
    """Token ids of prompt and completions as TRL builds them for the harness's conversational rows.

    TRL applies the chat template to the prompt (with the generation prompt) and to prompt +
    completion; the completion starts where the two diverge (trl.data_utils.common_prefix_length).
    """
    template = tokenizer.apply_chat_template
    prompt_texts, full_texts = [], []
    for r in rows:
        msgs = [{"role": "user", "content": r.prompt}]
        prompt_texts.append(template(msgs, tokenize=False, add_generation_prompt=True))
        for text in r.completions.values():
            full_texts.append(template(msgs + [{"role": "assistant", "content": text}], tokenize=False))
    prompt_ids = _batched_ids(tokenizer, prompt_texts)
    full_ids = _batched_ids(tokenizer, full_texts)
    out, k = [], 0
    for r, p in zip(rows, prompt_ids):
        names = list(r.completions)
        fulls = full_ids[k : k + len(names)]
        k += len(names)
        plen = min(_common_prefix(p, f) for f in fulls)
        out.append({"prompt": p[:plen], **{n: f[plen:] for n, f in zip(names, fulls)}})
    return out


def check_rows(rows: Iterable[tuple[str, int, dict]], *, source: str, tokenizer=None, max_length: int | None = None,
               max_prompt_length: int | None = None, variant: str | None = None, variant_shape: str | None = None,
               row_errors: list[RowError] | None = None, template_checks: bool = True) -> DataCheckReport:
    """Check rows read by `read_rows`: every problem with its place; `usable` holds the rows training gets."""
    issues = _Issues()
    counts: Counter = Counter()
    dropped: Counter = Counter()
    parsed, files, n_rows = _parse_all(rows, row_errors or [], issues, counts)
    fmt, parsed, shape = _format_checks(parsed, issues, variant, variant_shape)
    markers = template_markers(tokenizer) if template_checks else ()
    kept = _row_checks(parsed, markers, issues, counts, dropped)
    token_info: dict[str, Any] | None = None
    token_lengths: list[tuple[int, int]] = []
    if tokenizer is not None and kept:
        if not getattr(tokenizer, "chat_template", None):
            issues.add(FATAL, "no_chat_template",
                       "model.name: the tokenizer has no chat template; the harness trains on conversational "
                       "rows and needs one (use an instruct/chat model)", None, None, "model.name")
        else:
            kept, token_info, token_lengths = _token_checks(kept, tokenizer, max_length, max_prompt_length,
                                                            issues, dropped, counts)
    lengths = _length_checks([r for r in kept if r.shape == "paired"], token_lengths, source, issues)
    labels = _label_checks(kept, parsed, shape, fmt, issues) if shape == "unpaired" and parsed else None
    if parsed and not kept:
        detail = ", ".join(f"{k}: {v}" + (f" (the prompt alone fills training.max_length={max_length})"
                                          if k == "truncated_away" else "") for k, v in dropped.items())
        firsts = [issues.by_key.get((WARNING, f"dropped_{k}")) for k in dropped]
        where = "; ".join(f"{k} first at {i.place}" for k, i in zip(dropped, firsts) if i)
        what = "preference pairs" if shape == "paired" else "rows"
        issues.add(FATAL, "no_usable_rows", f"{source}: no usable {what} ({detail}; {where})",
                   source, None, None)
    return DataCheckReport(
        source=source, files=files, format=fmt, rows=n_rows, usable_rows=len(kept), counts=dict(counts),
        dropped=dropped, lengths=lengths, labels=labels, tokenization=token_info, issues=issues.list(), usable=kept)


def _parse_all(rows, row_errors: list[RowError], issues: "_Issues", counts: Counter):
    files: list[str] = []
    parsed: list[ParsedRow] = []
    n_rows = 0
    for err in row_errors:
        n_rows += 1
        counts[err.code] += 1
        issues.add(FATAL, err.code, str(err), err.file, err.row, err.field)
    for file, line, row in rows:
        n_rows += 1
        if file not in files:
            files.append(file)
        try:
            parsed.append(parse_row(file, line, row))
        except RowError as err:
            counts[err.code] += 1
            issues.add(FATAL, err.code, str(err), err.file, err.row, err.field)
    for err in row_errors:
        if err.file and err.file not in files:
            files.append(err.file)
    return parsed, files, n_rows


def _format_checks(parsed: list[ParsedRow], issues: "_Issues", variant, variant_shape):
    """The data's format (shape, style, prompt kind); one source holds one shape: the minority is dropped."""
    shapes = Counter(r.shape for r in parsed)
    styles = Counter(r.style for r in parsed)
    implicit = Counter(r.implicit_prompt for r in parsed)
    shape = "mixed" if len(shapes) > 1 else next(iter(shapes), "unknown")
    style = "mixed" if len(styles) > 1 else next(iter(styles), "unknown")
    prompt_kind = "mixed" if len(implicit) > 1 else ("implicit" if implicit.get(True) else "explicit")
    fmt: dict[str, Any] = {"shape": shape, "style": style, "prompt": prompt_kind}
    if shapes.get("unpaired"):
        first_unpaired = next(r for r in parsed if r.shape == "unpaired")
        fmt["completion_field"] = first_unpaired.completion_field
        fmt["label_field"] = first_unpaired.label_field
    fmt["name"] = _format_name(fmt)
    if shape == "mixed":
        majority = shapes.most_common(1)[0][0]
        first_major = next(r for r in parsed if r.shape == majority)
        odd = [r for r in parsed if r.shape != majority]
        what = {"paired": "a paired row (prompt/chosen/rejected)",
                "unpaired": "an unpaired row (prompt/completion/label)"}
        issues.add(FATAL, "mixed_formats",
                   f"{odd[0].file}: row {odd[0].row}: {what[odd[0].shape]} among {majority} rows "
                   f"(first at {first_major.file}: row {first_major.row}); one data source holds one format",
                   odd[0].file, odd[0].row, None, count=len(odd))
        parsed = [r for r in parsed if r.shape == majority]
        shape = majority
    if style == "mixed":
        first_std = next(r for r in parsed if r.style == "standard")
        issues.add(WARNING, "mixed_styles",
                   f"{first_std.file}: row {first_std.row}: standard (string) rows mixed with conversational "
                   f"(message-list) rows; both are converted to messages, but check they come from one source",
                   first_std.file, first_std.row, None, count=styles["standard"])
    if shape == "unpaired" and variant_shape == "paired" and parsed:
        r = parsed[0]
        issues.add(FATAL, "unpaired_for_paired_variant",
                   f"{r.file}: row {r.row}: unpaired rows (prompt/{r.completion_field}/{r.label_field}) cannot "
                   f"train variant {variant!r}, which needs chosen/rejected pairs; use variant kto for unpaired data",
                   r.file, r.row, r.completion_field)
    return fmt, parsed, shape


def _template_issue(r: ParsedRow, markers, issues: "_Issues", counts: Counter) -> None:
    for name, text in {"prompt": r.prompt, **r.completions}.items():
        stripped = text.lstrip()
        hit = next((m for m in markers if stripped.startswith(m)), None)
        if hit:
            issues.add(FATAL, "chat_template_applied",
                       f"{r.file}: row {r.row}: field '{name}': starts with {hit!r}: the chat template was "
                       f"already applied, and training applies it again (double BOS / double template); "
                       f"give plain text or message lists", r.file, r.row, name)
            counts["template_already_applied"] += 1
            return
        inner = next((m for m in markers if m in text), None)
        if inner:
            issues.add(WARNING, "template_markers",
                       f"{r.file}: row {r.row}: field '{name}': contains the chat-template marker {inner!r}",
                       r.file, r.row, name)
            counts["template_markers"] += 1
            return


def _row_checks(parsed: list[ParsedRow], markers, issues: "_Issues", counts: Counter, dropped: Counter) -> list[ParsedRow]:
    """Empty fields, dropped context, chat templates already applied, duplicates, rows training drops."""
    seen: dict[str, ParsedRow] = {}
    prompts_seen: set[str] = set()
    kept: list[ParsedRow] = []
    for r in parsed:
        for name, text in {"prompt": r.prompt, **r.completions}.items():
            if not text.strip():
                counts[f"empty_{name}"] += 1
        for name in r.context_dropped:
            issues.add(WARNING, "context_dropped",
                       f"{r.file}: row {r.row}: field '{name}': several messages; training uses only the last "
                       f"one (system prompts and earlier turns are not seen)", r.file, r.row, name)
        _template_issue(r, markers, issues, counts)
        key = hashlib.sha1(json.dumps([r.shape, r.prompt, r.chosen, r.rejected, r.completion, r.label])
                           .encode()).hexdigest()
        if key in seen:
            first = seen[key]
            counts["duplicates"] += 1
            issues.add(WARNING, "duplicates", f"{r.file}: row {r.row}: repeats {first.file}: row {first.row}",
                       r.file, r.row, None)
        else:
            seen[key] = r
        if r.prompt in prompts_seen:
            counts["duplicate_prompts"] += 1
        prompts_seen.add(r.prompt)
        if r.shape == "paired" and r.chosen.strip() == r.rejected.strip():
            counts["chosen_equals_rejected"] += 1
        reason = r.drop_reason()
        if reason:
            dropped[reason[0]] += 1
            issues.add(WARNING, f"dropped_{reason[0]}",
                       f"{r.file}: row {r.row}: field '{reason[1]}': {_DROP_TEXT[reason[0]]}; the row is dropped",
                       r.file, r.row, reason[1])
            continue
        kept.append(r)
    return kept


def _length_checks(paired: list[ParsedRow], token_lengths: list[tuple[int, int]], source: str,
                   issues: "_Issues") -> dict[str, Any]:
    """How often chosen is longer than rejected: a length bias the model can learn instead of quality."""
    if not paired:
        return {}
    chars = [(len(r.chosen), len(r.rejected)) for r in paired]
    lengths: dict[str, Any] = {"pairs": len(paired)}
    lengths["chosen_longer_share"] = _shares(sum(c > j for c, j in chars), len(chars))
    lengths["rejected_longer_share"] = _shares(sum(c < j for c, j in chars), len(chars))
    lengths["mean_length_ratio"] = round(mean(c / max(j, 1) for c, j in chars), 4)
    lengths["mean_chosen_chars"] = round(mean(c for c, _ in chars), 1)
    lengths["mean_rejected_chars"] = round(mean(j for _, j in chars), 1)
    if token_lengths:
        lengths["chosen_longer_share_tokens"] = _shares(sum(c > j for c, j in token_lengths), len(token_lengths))
        lengths["mean_length_ratio_tokens"] = round(mean(c / max(j, 1) for c, j in token_lengths), 4)
    share, ratio = lengths["chosen_longer_share"], lengths["mean_length_ratio"]
    if share > LENGTH_BIAS_SHARE or ratio > LENGTH_BIAS_RATIO or ratio < 1 / LENGTH_BIAS_RATIO:
        issues.add(WARNING, "length_bias",
                   f"{source}: chosen is longer than rejected in {share:.0%} of pairs (mean length ratio "
                   f"{ratio:.2f}): the model can learn length instead of quality; check length-controlled metrics",
                   source, None, "chosen")
    return lengths


def _label_checks(kept: list[ParsedRow], parsed: list[ParsedRow], shape: str, fmt: dict, issues: "_Issues") -> dict:
    """KTO rows: both classes present, and the minority not too thin."""
    unpaired = [r for r in kept if r.shape == "unpaired"]
    n_d = sum(1 for r in unpaired if r.label)
    n_u = len(unpaired) - n_d
    labels = {"desirable": n_d, "undesirable": n_u, "desirable_share": _shares(n_d, len(unpaired))}
    label_field = fmt.get("label_field", "label")
    first = parsed[0]
    if not unpaired or issues.has_fatal_rows():
        return labels  # judged once the rows parse
    if n_d == 0 or n_u == 0:
        which = "desirable (true / up)" if n_u == 0 else "undesirable (false / down)"
        issues.add(FATAL, "one_class_labels",
                   f"{first.file}: field '{label_field}': all {len(unpaired)} usable row(s) are {which}; KTO needs "
                   f"both desirable and undesirable rows", first.file, None, label_field)
    elif min(n_d, n_u) / len(unpaired) < LABEL_MINORITY_SHARE:
        issues.add(WARNING, "label_imbalance",
                   f"{first.file}: field '{label_field}': {n_d} desirable vs {n_u} undesirable rows; the "
                   f"KTO weights are rebalanced, but the minority class is thin", first.file, None, label_field)
    return labels


_DROP_TEXT = {
    "empty_prompt": "the prompt is empty",
    "empty_completion": "the completion is empty",
    "chosen_equals_rejected": "chosen equals rejected",
}


def _token_checks(rows, tokenizer, max_length, max_prompt_length, issues: _Issues, dropped: Counter, counts: Counter):
    ids = _tokenize_rows(rows, tokenizer)
    kept: list[ParsedRow] = []
    n = len(rows)
    stats = Counter()
    token_lengths: list[tuple[int, int]] = []
    for r, t in zip(rows, ids):
        names = list(r.completions)
        plen = len(t["prompt"])
        if max_prompt_length is not None and plen > max_prompt_length:
            stats["prompt_truncated"] += 1
            plen = max_prompt_length
        if r.shape == "paired":
            token_lengths.append((len(t["chosen"]), len(t["rejected"])))
            if t["chosen"] == t["rejected"]:
                stats["equal_after_tokenization"] += 1
        if max_length is None:
            kept.append(r)
            continue
        if max_prompt_length is None and plen > max_length:
            stats["prompt_truncated"] += 1
        if plen >= max_length:  # TRL (keep_start) drops such rows without a word: no completion token left
            dropped["truncated_away"] += 1
            stats["truncated_away"] += 1
            issues.add(WARNING, "dropped_truncated_away",
                       f"{r.file}: row {r.row}: field 'prompt': {len(t['prompt'])} prompt tokens fill "
                       f"training.max_length={max_length}: nothing of the completion is left; the row is dropped",
                       r.file, r.row, "prompt")
            continue
        budget = max_length - plen
        for name in names:
            if len(t[name]) > budget:
                stats[f"{name}_truncated"] += 1
        if r.shape == "paired" and t["chosen"][:budget] == t["rejected"][:budget]:
            dropped["equal_after_truncation"] += 1
            stats["equal_after_truncation"] += 1
            issues.add(WARNING, "dropped_equal_after_truncation",
                       f"{r.file}: row {r.row}: field 'rejected': chosen and rejected are identical in the "
                       f"{budget} completion tokens that fit training.max_length={max_length}; the row is dropped",
                       r.file, r.row, "rejected")
            continue
        kept.append(r)
    info: dict[str, Any] = {
        "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__), "max_length": max_length,
        "max_prompt_length": max_prompt_length, "rows": n,
        "equal_after_tokenization": stats["equal_after_tokenization"],
        "equal_after_truncation": stats["equal_after_truncation"], "truncated_away": stats["truncated_away"],
        "prompt_truncated_rate": _shares(stats["prompt_truncated"], n),
        "mean_prompt_tokens": round(mean(len(t["prompt"]) for t in ids), 1) if ids else 0.0,
    }
    names = ["chosen", "rejected"] if any(r.shape == "paired" for r in rows) else \
        sorted({n for r in rows for n in r.completions})
    for name in names:
        info[f"{name}_truncated_rate"] = _shares(stats[f"{name}_truncated"], n)
        rate = info[f"{name}_truncated_rate"]
        if rate > COMPLETION_TRUNCATION_WARN:
            issues.add(WARNING, f"{name}_truncated",
                       f"field '{name}': {rate:.0%} of rows are cut at training.max_length={max_length}",
                       None, None, name)
    if stats["equal_after_tokenization"]:
        counts["equal_after_tokenization"] = stats["equal_after_tokenization"]
    return kept, info, token_lengths


def _format_name(fmt: dict[str, Any]) -> str:
    shape, style = fmt["shape"], fmt["style"]
    if shape == "unknown":
        return "unknown (no readable rows)"
    name = f"{style} {'preference' if shape == 'paired' else 'unpaired preference' if shape == 'unpaired' else 'mixed paired/unpaired'}"
    if shape == "paired" and fmt["prompt"] != "explicit":
        name += f" ({fmt['prompt']} prompt)"
    if shape == "unpaired":
        name += f" ({fmt.get('completion_field')}/{fmt.get('label_field')})"
    return name


def check_source(source: str, *, tokenizer=None, max_length: int | None = None, max_prompt_length: int | None = None,
                 variant: str | None = None, variant_shape: str | None = None, split: str = "train") -> DataCheckReport:
    """Check a file, folder or hf:NAME without stopping at the first bad row.

    A source that cannot be read at all (no such file, an unparsable JSON array) raises `DataError`.
    """
    errors: list[RowError] = []
    rows = read_rows(source, split, on_error=errors.append)
    report = check_rows(rows, source=source, tokenizer=tokenizer, max_length=max_length,
                        max_prompt_length=max_prompt_length, variant=variant, variant_shape=variant_shape,
                        row_errors=errors)
    if report.rows == 0:
        report.issues.append(Issue(FATAL, "no_rows", f"{source}: the data has no rows", source))
    return report

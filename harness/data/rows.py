"""Preference rows as users give them: reading JSONL/JSON/Parquet/CSV files, folders and `hf:`
datasets (`read_rows`), and parsing one row of any supported shape (standard or conversational,
explicit or implicit prompt, paired or unpaired/thumbs) into a `ParsedRow` (`parse_row`), with
errors naming file, row and field. The leaf of `harness.data`: it imports nothing else of it."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError

ROLES = {"system", "user", "assistant"}


_PUNCTUATION = re.compile(r"[^\w\s]")


_WHITESPACE = re.compile(r"\s+")


def normalise_prompt(text: str) -> str:
    """A prompt as compared for identity: casefolded, punctuation stripped, whitespace collapsed. Two prompts
    that differ only in case, spacing or punctuation ask the same thing, so they must not sit on both sides
    of a train/held-out split, nor in both the training data and the eval set."""
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", text.casefold())).strip()


def prompt_of_row(row: Any) -> str:
    """The prompt text of a preference row: a pair or KTO dict (plain or conversational), or a ParsedRow."""
    prompt = row["prompt"] if isinstance(row, dict) else row.prompt  # a pair, or a ParsedRow (KTO rows)
    if isinstance(prompt, list):  # conversational rows: the user's last message
        prompt = prompt[-1].get("content", "") if prompt else ""
    return str(prompt)


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
    # only files: a folder named like a data file (`part.jsonl/`) is not one
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.suffix in (".jsonl", ".json", ".parquet")
                   or p.name.endswith(".jsonl.gz"))) if path.is_dir() else [path]
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
            except (ValueError, RecursionError) as exc:
                raise DataError(f"{f}: not valid JSON: {_json_problem(exc, where=True)}") from None
            for i, r in enumerate(items):
                if isinstance(r, dict):
                    rows.append((str(f), i + 1, r))
                else:
                    bad(RowError(f"{f}: row {i + 1}: expected a JSON object, got {type(r).__name__}",
                                 file=str(f), row=i + 1, code="not_an_object"))
            continue
        for i, line in enumerate(jsonl_lines(text)):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:
                bad(RowError(f"{f}: row {i + 1}: not valid JSON ({_json_problem(exc)})", file=str(f), row=i + 1,
                             code="bad_json"))
                continue
            if not isinstance(row, dict):
                bad(RowError(f"{f}: row {i + 1}: expected a JSON object, got {type(row).__name__}",
                             file=str(f), row=i + 1, code="not_an_object"))
                continue
            rows.append((str(f), i + 1, row))
    return rows


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSON-lines text: split at \n only (a \r before it dropped). str.splitlines also splits
    at U+2028/U+2029, U+0085 and other separators that JSON allows raw inside strings, which would cut
    a valid row in two."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _json_problem(exc: Exception, *, where: bool = False) -> str:
    """json.loads's complaint in words: a syntax error (with its line and column when `where`), nesting
    deeper than Python's stack allows, an integer too long to convert."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return str(exc) if where else exc.msg
    return str(exc).split(";")[0]  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"


def _read_text(f: Path) -> str:
    """A text file, or a gzipped one (.gz: public datasets such as HH-RLHF ship .jsonl.gz)."""
    if f.suffix != ".gz":
        return f.read_text("utf-8")
    import gzip

    try:
        return gzip.decompress(f.read_bytes()).decode("utf-8")
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: truncated
        raise DataError(f"{f}: not a readable gzip file ({exc})") from None


def message_text(value: Any, file: str, line: int, field_name: str, expect_role: str | None) -> str:
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
            prompt=message_text(prompt, file, line, "prompt", "user"),
            completion=message_text(completion, file, line, completion_field, "assistant"),
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
    prompt_text = message_text(prompt, file, line, "prompt", "user") if prompt else ""
    return ParsedRow(
        file=file, row=line, shape="paired", style="conversational" if isinstance(chosen, list) else "standard",
        implicit_prompt=implicit, prompt=prompt_text,
        chosen=message_text(chosen, file, line, "chosen", "assistant"),
        rejected=message_text(rejected, file, line, "rejected", "assistant"),
        context_dropped=_context(prompt, "prompt") + _context(chosen, "chosen") + _context(rejected, "rejected"))

"""Production thumbs feedback: which rows count, and how they become training data.

A feedback log has one row per rated answer: prompt, response, up/down, timestamp, model version.
Only rows within `max_age_days` of `now` and from the configured `model_versions` are kept (old
answers from other models describe a policy we no longer serve). Exact repeats of a vote are
dropped; the same answer voted both up and down says nothing and is dropped too. Every dropped
row is counted under its reason. Paired variants get chosen/rejected pairs from prompts that
received both an up and a down answer; KTO gets the rows themselves.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from harness.config import FeedbackConfig
from harness.data.rows import UNPAIRED_COMPLETION_FIELDS, UNPAIRED_LABEL_FIELDS, RowError, label_value

TIMESTAMP_FIELDS = ("timestamp", "created_at", "time")
VERSION_FIELDS = ("model_version", "model")

Row = tuple[str, int, dict]  # (file, 1-based row, fields), as harness.data.rows.read_rows gives them


def parse_timestamp(value: Any, file: str, line: int, field: str) -> datetime:
    """ISO 8601 (a trailing Z is UTC) or Unix seconds; a time without a zone is taken as UTC."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    raise RowError(f"{file}: row {line}: field '{field}': not a timestamp (ISO 8601 or Unix seconds): {value!r}",
                   file=file, row=line, field=field, code="bad_timestamp")


def _first_field(row: dict, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in row), None)


def _required(row: dict, names: tuple[str, ...], file: str, line: int, why: str) -> str:
    found = _first_field(row, names)
    if found is None:
        raise RowError(f"{file}: row {line}: missing field '{names[0]}' ({why})",
                       file=file, row=line, field=names[0], code="missing_field")
    return found


@dataclass
class FeedbackSelection:
    rows: list[Row]  # unpaired rows (prompt / response / label), filtered and de-duplicated
    dropped: Counter
    now: datetime | None = None  # the time ages were measured from (recorded with the run's data)


def select_feedback(rows: list[Row], config: FeedbackConfig, now: datetime | None = None,
                    on_error=None) -> FeedbackSelection:
    """Filter by age and model version, then drop repeats and contradictions. Rows that cannot be read
    (no timestamp while an age limit is set, a bad label, ...) go to `on_error`, or raise."""
    now = now or config.now or datetime.now(timezone.utc)
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    max_age = timedelta(days=config.max_age_days) if config.max_age_days else None
    versions = set(config.model_versions or [])
    dropped: Counter = Counter()
    kept: list[tuple[Row, tuple[str, str], bool]] = []
    seen: set[tuple[str, str, bool]] = set()
    for file, line, row in rows:
        try:  # the window first: junk in rows outside it (old logs, other models) does not stop a run
            if max_age is not None:
                ts_field = _required(row, TIMESTAMP_FIELDS, file, line, "data.feedback.max_age_days needs a time")
                age = now - parse_timestamp(row[ts_field], file, line, ts_field)
                if age > max_age:
                    dropped["feedback_too_old"] += 1
                    continue
                if age < -timedelta(hours=1):  # a clock that runs ahead: the row's age is unknowable
                    dropped["feedback_future_timestamp"] += 1
                    continue
            if versions:
                version_field = _required(row, VERSION_FIELDS, file, line, "data.feedback.model_versions needs it")
                if str(row[version_field]) not in versions:
                    dropped["feedback_other_model_version"] += 1
                    continue
            response_field = _required(row, UNPAIRED_COMPLETION_FIELDS, file, line, "the rated answer")
            label_field = _required(row, UNPAIRED_LABEL_FIELDS, file, line, "up or down")
            _required(row, ("prompt",), file, line, "what the answer answered")
            label = label_value(row[label_field], file, line, label_field)
        except RowError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        answer = (json.dumps(row["prompt"], sort_keys=True), json.dumps(row[response_field], sort_keys=True))
        if (*answer, label) in seen:
            dropped["feedback_duplicate"] += 1
            continue
        seen.add((*answer, label))
        kept.append(((file, line, row), answer, label))
    labels_of: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for _, answer, label in kept:
        labels_of[answer].add(label)
    contradictory = {a for a, labels in labels_of.items() if len(labels) > 1}
    dropped["feedback_contradictory"] += sum(1 for _, a, _ in kept if a in contradictory)
    out = [(f, n, {**r, "label": lab}) for (f, n, r), a, lab in kept if a not in contradictory]
    return FeedbackSelection(out, +dropped, now)


def feedback_pairs(selection: FeedbackSelection) -> FeedbackSelection:
    """Prompts with both an up and a down answer become pairs (up = chosen), matched in log order;
    answers left without a partner are counted, not used."""
    by_prompt: dict[str, dict[bool, list[Row]]] = defaultdict(lambda: {True: [], False: []})
    for file, line, row in selection.rows:
        by_prompt[json.dumps(row["prompt"], sort_keys=True)][bool(row["label"])].append((file, line, row))
    pairs: list[Row] = []
    dropped = Counter(selection.dropped)
    for groups in by_prompt.values():
        ups, downs = groups[True], groups[False]
        for (file, line, up), (_, _, down) in zip(ups, downs):
            pairs.append((file, line, {"prompt": up["prompt"], "chosen": _answer(up), "rejected": _answer(down)}))
        if len(ups) != len(downs):
            dropped["feedback_without_opposite_vote"] += abs(len(ups) - len(downs))
    return FeedbackSelection(pairs, +dropped, selection.now)


def _answer(row: dict) -> Any:
    return row[_first_field(row, UNPAIRED_COMPLETION_FIELDS)]

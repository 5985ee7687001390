"""Rule checks for `harness_format_gen`: one verifiable format instruction per item.

lm-eval loads this file by path from the task YAML (`!function format_checks.process_results`),
so it must stay self-contained: standard library only, no imports from the project.
"""
from __future__ import annotations

import re

_BULLET = re.compile(r"^\s*[*\-•]\s+\S")


def _lowercase(text: str, arg: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.lower()


def _uppercase(text: str, arg: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.upper()


def _bullets(text: str, arg: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) == int(arg) and all(_BULLET.match(ln) for ln in lines)


def _end_phrase(text: str, arg: str) -> bool:
    return text.strip().endswith(arg)


def _start_word(text: str, arg: str) -> bool:
    words = re.findall(r"[A-Za-z']+", text)
    return bool(words) and words[0].lower() == arg.lower() and text.lstrip()[:1].isalpha()


def _include_keyword(text: str, arg: str) -> bool:
    return re.search(rf"\b{re.escape(arg)}\b", text, flags=re.IGNORECASE) is not None


def _no_commas(text: str, arg: str) -> bool:
    return bool(text.strip()) and "," not in text


def _max_words(text: str, arg: str) -> bool:
    n = len(text.split())
    return 0 < n <= int(arg)


def _quoted(text: str, arg: str) -> bool:
    t = text.strip()
    return len(t) >= 2 and t[0] == '"' and t[-1] == '"'


CHECKS = {
    "lowercase": _lowercase,
    "uppercase": _uppercase,
    "bullets": _bullets,
    "end_phrase": _end_phrase,
    "start_word": _start_word,
    "include_keyword": _include_keyword,
    "no_commas": _no_commas,
    "max_words": _max_words,
    "quoted": _quoted,
}


def check_format(instruction_id: str, arg: str, response: str) -> bool:
    """True when `response` follows the instruction; an unknown instruction id is an error, not a fail."""
    try:
        check = CHECKS[instruction_id]
    except KeyError:
        raise KeyError(f"unknown format instruction {instruction_id!r} (known: {sorted(CHECKS)})") from None
    return bool(check(response, arg))


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval hook: `results` holds the one generated continuation for `doc`."""
    response = results[0] if results else ""
    return {"acc": float(check_format(doc["instruction_id"], doc["arg"], response))}

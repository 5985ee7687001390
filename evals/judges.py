"""Pairwise judges behind one interface: preference 1 (first wins), 2 (second wins), 1.5 (tie).

Convention as in alpaca-eval: output_1 is the reference, output_2 the policy. Judges are
registered like everything else; LLM and reward-model judges plug in under the same names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.registry import Registry
from harness.verifiable_prompts import VerifiablePrompt


@dataclass(frozen=True)
class JudgeItem:
    prompt: str
    output_1: str
    output_2: str
    verifier: VerifiablePrompt | None = None  # rule judges need the prompt's instructions


class Judge(Protocol):
    name: str

    def judge(self, items: list[JudgeItem]) -> list[float]: ...


JUDGES: Registry[type] = Registry("judge")


class JudgeError(RuntimeError):
    """A judge could not give verdicts (unreachable, malformed answers): the eval fails, it never guesses."""


@JUDGES.register("rule")
class RuleJudge:
    """Prefers the answer that follows more of the prompt's verifiable instructions; equal scores tie."""

    name = "rule"

    def judge(self, items: list[JudgeItem]) -> list[float]:
        verdicts = []
        for i, item in enumerate(items):
            if item.verifier is None:
                raise JudgeError(f"rule judge: item {i} has no verifiable instructions")
            s1, s2 = item.verifier.score(item.output_1), item.verifier.score(item.output_2)
            verdicts.append(1.0 if s1 > s2 else 2.0 if s2 > s1 else 1.5)
        return verdicts


def position_swapped_verdicts(judge: Judge, items: list[JudgeItem]) -> tuple[list[float], float]:
    """Judge both orders; a verdict that flips with the order becomes a tie. Returns (verdicts, flip rate)."""
    forward = judge.judge(items)
    swapped = judge.judge([JudgeItem(i.prompt, i.output_2, i.output_1, i.verifier) for i in items])
    verdicts, flips = [], 0
    for f, s in zip(forward, swapped):
        s_unswapped = 3.0 - s  # map the swapped verdict back to the original order
        if f == s_unswapped:
            verdicts.append(f)
        else:
            flips += (f != 1.5 or s_unswapped != 1.5)
            verdicts.append((f + s_unswapped) / 2)
    return verdicts, flips / max(len(items), 1)

"""Anytime-valid confidence sequences for a bounded mean, and the gate's decisions on them.

A fixed-n interval is valid once, at the n it was planned for: looking after every batch and
stopping when it first clears the threshold promotes an equal-quality cell far more often than the
stated level (measured in docs/sequential.md: 27-29% at a nominal 5% with 50 looks). A confidence sequence
(CS) is a sequence of intervals that hold at every n at once, so a gate may look after every batch
and stop the moment the answer is clear, with the error rate still held under that optional stopping.

Method: the betting CS of Waudby-Smith and Ramdas, "Estimating means of bounded random variables by
betting", JRSS-B 86(1):1-27, 2024 (discussion paper, online 2023; arXiv:2010.09686). For a candidate mean m and scores x_i in [0, 1],
the capital of a gambler betting that the mean is above m,

    K+_t(m) = prod_{i<=t} (1 + lambda+_i(m) (x_i - m)),   lambda+_i(m) = min(lambda_i, c / m),

is a nonnegative martingale when the true mean is m (a supermartingale when it is below m), provided
the bet lambda_i >= 0 is fixed before x_i is seen (predictable). By Ville's inequality it ever reaches
1/alpha with probability at most alpha, so {m : K+_t(m) < 1/alpha} misses the mean at some t with
probability at most alpha; K-_t(m) (betting below, lambda-_i(m) = min(lambda_i, c / (1 - m))) gives the
upper side. Because lambda_i does not depend on m, each factor is monotone in m (the truncation at
c / m keeps it so), K+ is nonincreasing and K- nondecreasing in m: each side is an interval, the
bound is found by a bracketing search, and "the lower bound lies above m0" is exactly "K+_t(m0) reached
1/alpha", which is how decisions are taken here (no search tolerance can flip a verdict).

The bet (any predictable choice is valid; this one decides what the CS is tight for): WSR's
predictable plug-in ("PrPl"), lambda_t = sqrt(2 log(1/alpha) / (var_{t-1} t log(1 + t))), floored by
the same rate tuned to a horizon h (their fixed-n tuning, sqrt(2 log(1/alpha) / (var_{t-1} h))) and
capped at c = 1/2 (a step loses at most half the capital), with WSR's regularised running estimates
mu_t = (1/2 + sum_{i<=t} x_i) / (t + 1), var_t = (1/4 + sum_{i<=t} (x_i - mu_i)^2) / (t + 1). The PrPl term bets
big early (a large effect stops after a few batches); the horizon floor keeps the bets from shrinking
below what a sample of h needs (h = half the prompt budget by default: a 10-point effect with a
400-prompt budget was decided in 162 prompts on average at 94.6% power; floored at the whole budget
174 at 94.0%; PrPl alone 195 at 85.7%; docs/sequential.md). Without a horizon the CS is WSR's plain PrPl CS.

Scores: a per-prompt win score in [0, 1] (alpaca-eval preference - 1: ties 0.5, a verdict that flips
with the order 0.25 or 0.75), per-item accuracy in {0, 1}, and per-item paired differences
(policy - baseline) in [-1, 1], rescaled to [0, 1] by `lo`/`hi`. Bounds come back in the scores' units.

Everything is numpy, vectorised over a leading axis of simulated sequences: the simulation tests and
`python -m bench.sequential_validity` run the same functions the gate would.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Literal, Mapping, Sequence

import numpy as np

from harness.atomic_io import create_json_exclusive
from harness.errors import HarnessInputError

BET_CAP = 0.5  # c: a bet never stakes more than half the capital on one item (WSR's c = 1/2)
# Paired differences (policy - baseline per item, mostly 0: unchanged items) have a small variance, so the
# plug-in bet is large and the cap above is what binds: a task where nothing changed needed all 123 items
# to show a 10-point non-inferiority with it, 56 with WSR's truncation at c / m alone (below). Win scores
# have a variance near 1/4, where a cap at 1/2 is close to the Kelly bet for a 10-point effect and larger
# caps lose power (docs/sequential.md, "Which bet"). Any predictable bet is valid; these are the measured
# choices.
PAIRED_BET_CAP = math.inf
_GRID, _REFINEMENTS = 16, 9  # the bound to 16^-9 = 2^-36 of the score range: far below any reported digit

Side = Literal["low", "high"]
RuleKind = Literal["min", "max", "max_regression"]
PASS, FAIL, CONTINUE = "pass", "fail", "continue"


# ---------------------------------------------------------------------------------- the capital process


def _unit(scores, lo: float, hi: float) -> np.ndarray:
    """Scores mapped to [0, 1]; anything outside [lo, hi] (or NaN) is a caller's bug, not data to clip."""
    if not hi > lo:
        raise ValueError(f"need lo < hi, got [{lo}, {hi}]")
    x = (np.asarray(scores, dtype=float) - lo) / (hi - lo)
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= -1e-12 and x.max() <= 1 + 1e-12):
        raise ValueError(f"scores must be finite and within [{lo}, {hi}]")
    return np.clip(x, 0.0, 1.0)


def predictable_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) known before each item (WSR's regularised estimates, seeded at 1/2 and 1/4, as
    the authors' confseq `lambda_predmix_eb` computes them): entry t uses items 0..t-1 only. Last axis."""
    n = x.shape[-1]
    t = np.arange(1, n + 1)
    mean = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2, axis=-1)) / (t + 1)
    lead = x.shape[:-1] + (1,)
    mean_before = np.concatenate([np.full(lead, 0.5), mean[..., :-1]], axis=-1)
    var_before = np.concatenate([np.full(lead, 0.25), var[..., :-1]], axis=-1)
    return mean_before, var_before


def bets(x: np.ndarray, alpha: float, horizon: int | None = None, cap: float = BET_CAP) -> np.ndarray:
    """The predictable bet lambda_t in [0, cap] for each item (last axis): WSR's PrPl rate, floored by
    the rate tuned to `horizon` items when given (module docstring). The capital truncates it further at
    c / m (log_capital), so `cap = inf` is WSR's bet as published."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    _, var = predictable_moments(x)
    t = np.arange(1, x.shape[-1] + 1)
    log_level = 2 * math.log(1 / alpha)
    lam = np.sqrt(log_level / (var * t * np.log1p(t)))
    if horizon:
        lam = np.maximum(lam, np.sqrt(log_level / (var * horizon)))
    return np.minimum(lam, cap)


def bet_cap(paired: bool) -> float:
    """The bet's cap for scores that are paired differences (PAIRED_BET_CAP) or bounded means (BET_CAP)."""
    return PAIRED_BET_CAP if paired else BET_CAP


def log_capital(x: np.ndarray, m, lam: np.ndarray, side: Side) -> np.ndarray:
    """log K_t(m) after each item (cumulative over the last axis). side "low": the gambler bets the mean
    is above m (its wealth rules m out from below); "high": below m. `m` broadcasts against the leading
    axes of x (e.g. one candidate per simulated sequence)."""
    m = np.asarray(m, dtype=float)[..., None] if np.ndim(m) else float(m)
    with np.errstate(divide="ignore"):
        if side == "low":
            stake = np.minimum(lam, BET_CAP / m)  # m = 0: no truncation (inf)
            factor = 1 + stake * (x - m)
        else:
            stake = np.minimum(lam, BET_CAP / (1 - m))
            factor = 1 - stake * (x - m)
    return np.cumsum(np.log(factor), axis=-1)


def _bound(x: np.ndarray, lam: np.ndarray, alpha: float, side: Side, at: np.ndarray) -> np.ndarray:
    """The one-sided bound after items 0..at[k]-1 for each k (1-D x), by a search on the monotone capital that
    splits the bracket into _GRID parts per round. It returns the bracket's ruled-out end, so the bound given
    is never tighter than the exact one: a rule it passes, the capital at the threshold passes too."""
    threshold = math.log(1 / alpha)
    mask = (np.arange(x.shape[-1])[None, :] < at[:, None])[:, None, :]  # looks x 1 x items
    low, high = np.zeros(len(at)), np.ones(len(at))
    steps = np.arange(1, _GRID) / _GRID  # the interior candidates of each bracket
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_REFINEMENTS):
            width = high - low
            m = (low[:, None] + width[:, None] * steps[None, :])[:, :, None]  # looks x candidates x 1
            if side == "low":
                factor = 1 + np.minimum(lam, BET_CAP / m) * (x - m)
            else:
                factor = 1 - np.minimum(lam, BET_CAP / (1 - m)) * (x - m)
            ruled_out = np.where(mask, np.log(factor), 0.0).sum(axis=-1) >= threshold  # looks x candidates
            # K+ falls with m (ruled-out candidates come first), K- rises (they come last): k = the candidates
            # before the change, the bound lies between candidates k and k + 1
            k = ruled_out.sum(axis=1) if side == "low" else (~ruled_out).sum(axis=1)
            low, high = low + width * k / _GRID, low + width * (k + 1) / _GRID
    return low if side == "low" else high


def _default_looks(n: int) -> np.ndarray:
    """Every item up to 512 items, else 512 evenly spaced looks (the running intersection over fewer
    looks is just as valid, slightly less tight)."""
    if n <= 512:
        return np.arange(1, n + 1)
    return np.unique(np.linspace(1, n, 512).round().astype(int))


def bounds_at_looks(scores: Sequence[float], alpha: float, *, looks: Iterable[int] | None = None,
                    horizon: int | None = None, lo: float = 0.0, hi: float = 1.0,
                    sides: tuple[Side, ...] = ("low", "high"), cap: float = BET_CAP) -> dict[Side, np.ndarray]:
    """One-sided (1 - alpha) bounds of the mean after each look (`looks`: items seen so far, increasing),
    as running intersections (the lower bound never falls, the upper never rises: every earlier
    interval holds too). In the scores' units."""
    x = _unit(scores, lo, hi)
    at = np.asarray(list(looks) if looks is not None else _default_looks(len(x)), dtype=int)
    if len(at) == 0 or at.min() < 1 or at.max() > len(x) or np.any(np.diff(at) <= 0):
        raise ValueError(f"looks must increase within 1..{len(x)}")
    lam = bets(x, alpha, horizon, cap)
    out: dict[Side, np.ndarray] = {}
    for side in sides:
        raw = _bound(x, lam, alpha, side, at)
        running = np.maximum.accumulate(raw) if side == "low" else np.minimum.accumulate(raw)
        out[side] = lo + (hi - lo) * running
    return out


def lower_upper(scores: Sequence[float], alpha: float = 0.05, *, horizon: int | None = None,
                lo: float = 0.0, hi: float = 1.0, cap: float = BET_CAP) -> tuple[float, float]:
    """The (1 - alpha) confidence sequence's interval after all of `scores` (alpha/2 on each side),
    intersected over every earlier look: valid whenever it is read, however often, and whenever the
    reader stops. Call it after every batch with the scores so far."""
    if len(scores) == 0:
        return lo, hi
    b = bounds_at_looks(scores, alpha / 2, horizon=horizon, lo=lo, hi=hi, cap=cap)
    return float(b["low"][-1]), float(b["high"][-1])


def ever_excludes(x: np.ndarray, truth: float, alpha: float, *, looks: np.ndarray, horizon: int | None = None,
                  two_sided: bool = True, cap: float = BET_CAP) -> np.ndarray:
    """Per simulated sequence (rows of unit-scale x): did the CS ever rule out `truth` at a look?
    (By monotonicity, ruling out the truth from below is K+_t(truth) >= 1/alpha, no bisection needed.)"""
    level = alpha / 2 if two_sided else alpha
    lam = bets(x, level, horizon, cap)
    idx = np.asarray(looks) - 1
    threshold = math.log(1 / level)
    miss = (log_capital(x, truth, lam, "low")[..., idx] >= threshold).any(axis=-1)
    if two_sided:
        miss |= (log_capital(x, truth, lam, "high")[..., idx] >= threshold).any(axis=-1)
    return miss


# ---------------------------------------------------------------------------------- gate decisions


@dataclass(frozen=True)
class SequentialRule:
    """A gate rule decided on the CS. `threshold` in the scores' units.

    min:            pass when the lower bound lies above threshold; fail when the upper bound is at or below it
    max:            pass when the upper bound lies below threshold; fail when the lower bound is at or above it
    max_regression: scores are paired differences (policy - baseline, per item); pass when the upper bound
                    of the drop (-mean) lies below threshold (the allowed drop, >= 0), i.e. the lower bound
                    of the mean difference lies above -threshold; fail when the drop is shown >= threshold
    Undecided at the budget is a fail: a claim that was not shown is not a pass (fail-closed).
    """

    kind: RuleKind
    threshold: float
    confidence: float = 0.95  # one-sided, after any Bonferroni share (harness.gate.rule_confidence)
    name: str = ""

    def __post_init__(self):
        if self.kind not in ("min", "max", "max_regression"):
            raise ValueError(f"unknown rule kind {self.kind!r}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if self.kind == "max_regression" and self.threshold < 0:
            raise ValueError("max_regression: the allowed drop must be >= 0")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def on_mean(self) -> tuple[float, Side, Side]:
        """(threshold on the mean, the side that passes, the side that fails) in score units."""
        if self.kind == "min":
            return self.threshold, "low", "high"
        if self.kind == "max":
            return self.threshold, "high", "low"
        return -self.threshold, "low", "high"  # mean difference shown above -allowed drop


@dataclass
class Look:
    n: int  # items seen
    low: float  # one-sided (confidence) lower bound of the mean, running intersection
    high: float  # one-sided upper bound
    status: str  # pass / fail / continue after this look


@dataclass
class SequentialDecision:
    status: str  # pass / fail / continue (more batches may come)
    n: int  # items used when decided (or seen so far)
    stopped_early: bool  # decided before the budget
    reason: str
    rule: SequentialRule
    looks: list[Look] = field(default_factory=list)

    @property
    def low(self) -> float:
        return self.looks[-1].low if self.looks else math.nan

    @property
    def high(self) -> float:
        return self.looks[-1].high if self.looks else math.nan

    def to_dict(self) -> dict:
        return {"status": self.status, "n": self.n, "stopped_early": self.stopped_early, "reason": self.reason,
                "rule": asdict(self.rule), "low": self.low, "high": self.high,
                "looks": [asdict(look) for look in self.looks]}


def _score_range(rule: SequentialRule, lo: float | None, hi: float | None) -> tuple[float, float]:
    default = (-1.0, 1.0) if rule.kind == "max_regression" else (0.0, 1.0)
    return (default[0] if lo is None else lo, default[1] if hi is None else hi)


def default_horizon(max_n: int) -> int:
    """The bets' horizon for a budget of max_n items: half of it (module docstring). Decisions take
    `horizon=None` for this default and `horizon=0` for WSR's plain PrPl bets."""
    return max(1, max_n // 2)


def simulate_decisions(scores: np.ndarray, rule: SequentialRule, *, batch: int, max_n: int,
                       lo: float | None = None, hi: float | None = None,
                       horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Many sequences at once (rows of `scores`, each at least max_n long): (status per row: 1 pass,
    -1 fail, 0 undecided at the budget; items used), looking after every `batch` items up to `max_n`.
    The same decision `sequential_decision` takes for one sequence (both call `_decide`)."""
    lo, hi = _score_range(rule, lo, hi)
    x = _unit(np.atleast_2d(scores)[:, :max_n], lo, hi)
    looks = np.unique(np.minimum(np.arange(batch, x.shape[1] + batch, batch), x.shape[1]))
    return _decide(x, (rule.on_mean()[0] - lo) / (hi - lo), rule, looks,
                   default_horizon(max_n) if horizon is None else horizon)


def _decide(x: np.ndarray, m0_unit: float, rule: SequentialRule, looks: np.ndarray,
            horizon: int) -> tuple[np.ndarray, np.ndarray]:
    _, pass_side, fail_side = rule.on_mean()
    threshold = math.log(1 / rule.alpha)
    lam = bets(x, rule.alpha, horizon, bet_cap(rule.kind == "max_regression"))
    idx = looks - 1
    # a threshold outside the scores' range is tested at the edge: conservative, never a free pass
    m0 = min(max(m0_unit, 0.0), 1.0)
    # the pass side's bound clears m0 exactly when its capital at m0 reaches 1/alpha (monotone in m)
    shown_pass = log_capital(x, m0, lam, pass_side)[:, idx] >= threshold
    shown_fail = log_capital(x, m0, lam, fail_side)[:, idx] >= threshold
    decided = shown_pass | shown_fail
    any_decided = decided.any(axis=1)
    first = np.where(any_decided, decided.argmax(axis=1), len(looks) - 1)
    rows = np.arange(len(x))
    # both at once (an empty intersection, probability <= 2 alpha): fail-closed
    status = np.where(shown_fail[rows, first], -1, np.where(shown_pass[rows, first], 1, 0))
    status = np.where(any_decided, status, 0)
    return status, looks[first]


def sequential_decision(batches: Iterable[Sequence[float]], rule: SequentialRule, *, max_n: int,
                        lo: float | None = None, hi: float | None = None,
                        horizon: int | None = None) -> SequentialDecision:
    """Pass / fail / continue after the batches seen so far (scores in [lo, hi]; default [0, 1], and
    [-1, 1] for max_regression). Looks after every batch; stops at the first look that decides; at
    `max_n` items an undecided rule fails. Re-calling with more batches continues where it stopped
    (the decision depends only on the scores, in order); a raised `max_n` continues the same test only with
    the `horizon` the first call used (the evals pass the recorded one: `recorded_plan`)."""
    lo, hi = _score_range(rule, lo, hi)
    arrays = [np.asarray(b, dtype=float).ravel() for b in batches]
    x_all = np.concatenate(arrays) if arrays else np.zeros(0)
    if len(x_all) == 0:
        return SequentialDecision(CONTINUE, 0, False, "no items yet", rule)
    # a look after every batch; a batch straddling the budget is looked at the budget itself
    looks_all = np.unique(np.minimum(np.cumsum([len(a) for a in arrays if len(a)]), max_n))
    x = _unit(x_all[: looks_all[-1]], lo, hi)
    m0, _, _ = rule.on_mean()
    horizon = default_horizon(max_n) if horizon is None else horizon  # 0: WSR's PrPl, no horizon
    status, used = _decide(x[None, :], (m0 - lo) / (hi - lo), rule, looks_all, horizon)
    status, used = int(status[0]), int(used[0])
    shown = [int(k) for k in looks_all if k <= used]
    bounds = bounds_at_looks(x_all[:used], rule.alpha, looks=shown, horizon=horizon, lo=lo, hi=hi,
                             cap=bet_cap(rule.kind == "max_regression"))
    looks = [Look(k, float(low), float(high), CONTINUE) for k, low, high in zip(shown, bounds["low"], bounds["high"])]
    at_budget = used >= max_n
    word = {"min": "lower bound", "max": "upper bound",
            "max_regression": "lower bound of the mean difference"}[rule.kind]
    level = f"{100 * rule.confidence:.4g}% anytime-valid"
    if status == 1:
        verdict, why = PASS, f"{word} ({level}) cleared {m0:.4g} after {used} items"
    elif status == -1:
        verdict, why = FAIL, f"shown on the wrong side of {m0:.4g} ({level}) after {used} items"
    elif at_budget:
        verdict, why = FAIL, f"not shown after the whole budget of {max_n} items ({level} bounds " \
                             f"[{looks[-1].low:.4g}, {looks[-1].high:.4g}] around {m0:.4g})"
    else:
        verdict, why = CONTINUE, f"undecided after {used} of {max_n} items"
    looks[-1].status = verdict
    return SequentialDecision(verdict, used, verdict != CONTINUE and not at_budget, why, rule, looks)


# ---------------------------------------------------------------------------------- scores from evals


def win_scores(verdicts: Sequence[float]) -> np.ndarray:
    """alpaca-eval preferences (1 baseline wins, 2 policy wins, 1.5 or 0 draw) -> win scores in [0, 1]."""
    v = np.asarray(verdicts, dtype=float)
    return np.where(v == 0, 1.5, v) - 1.0


def paired_differences(policy: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    """Per-item policy - baseline (0/1 accuracy: -1, 0 or 1), for max_regression rules."""
    p, b = np.asarray(policy, dtype=float), np.asarray(baseline, dtype=float)
    if p.shape != b.shape:
        raise ValueError(f"paired lists differ in length: {len(p)} vs {len(b)}")
    return p - b


# ---------------------------------------------------------------------------------- an eval that stops early

# Statistics that are not a mean of bounded per-item scores (the LC and style-controlled win rates are
# regression read-outs) get no betting CS. Their anytime bounds spend the level across the looks
# instead: look k uses alpha_k = alpha * (t_k^rho - t_{k-1}^rho), t = items / budget, and by the union
# bound the chance that any look's bound misses is at most sum(alpha_k) = alpha, whatever the
# dependence between looks (Lan and DeMets' alpha spending with the power family of Kim and DeMets;
# rho = 3 is close to O'Brien-Fleming: early looks spend little, so only clear effects stop early and
# the last look keeps most of the level).
SPENDING_POWER = 3.0


def spent_alpha(n_before: int, n: int, max_n: int, alpha: float, rho: float = SPENDING_POWER) -> float:
    """The share of alpha a look at n items (the previous look at n_before) may use."""
    t0, t1 = min(n_before, max_n) / max_n, min(n, max_n) / max_n
    return alpha * (t1 ** rho - t0 ** rho)


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


@dataclass
class MetricSequence:
    """The anytime bounds of one metric across the looks, and the rule (if any) they decide.
    `scale`: metric units per score unit (100 for a win rate in percent from win scores in [0, 1])."""

    metric: str
    rule: SequentialRule  # a rule no gate rule asked for has kind "min" at -inf: never decides
    method: Literal["betting", "spending"]
    max_n: int
    decides: bool = True
    scale: float = 1.0
    looks: list[Look] = field(default_factory=list)
    paired: bool = False  # scores are per-item paired differences in [-1, 1] (else a mean in [0, 1])
    # the budget the bets and the alpha spending are tuned to: the first run's budget of this comparison
    # (`recorded_plan`), so a later run with a raised budget continues the same test; 0: this run's max_n
    planned_n: int = 0

    @property
    def plan_n(self) -> int:
        return self.planned_n or self.max_n

    @property
    def status(self) -> str:
        return self.looks[-1].status if self.looks else CONTINUE

    def look_betting(self, scores: np.ndarray, looks: list[int]) -> None:
        """The betting CS after `looks` (items seen at each look so far; scores in [0, 1], or [-1, 1] when
        paired): its running intersection, in metric units."""
        lo, hi = (-1.0, 1.0) if self.paired else (0.0, 1.0)
        # the bound at this look only: the earlier looks' bounds are already in self.looks, and the running
        # intersection with them is what bounds_at_looks over every look would give (each look's bound
        # depends on the items up to it alone)
        b = bounds_at_looks(scores[: looks[-1]], self.rule.alpha, looks=looks[-1:], horizon=default_horizon(self.plan_n),
                            lo=lo, hi=hi, cap=bet_cap(self.paired))
        low, high = float(b["low"][-1]) * self.scale, float(b["high"][-1]) * self.scale
        if self.looks:
            low, high = max(low, self.looks[-1].low), min(high, self.looks[-1].high)
        self._look(looks[-1], low, high)

    def look_spending(self, n: int, value: float | None, stderr: float | None) -> None:
        """A normal bound at this look's spent alpha, intersected with the earlier looks' bounds; a look
        without an estimate (e.g. LC not identified yet) keeps the earlier bounds and spends its share. The
        whole alpha is spent by the planned budget: a continued test's later looks keep the bounds it had
        there (spending more would be a second test on the same prompts)."""
        n_before = self.looks[-1].n if self.looks else 0
        low, high = (self.looks[-1].low, self.looks[-1].high) if self.looks else (-math.inf, math.inf)
        alpha_k = spent_alpha(n_before, n, self.plan_n, self.rule.alpha)
        if value is not None and stderr is not None and math.isfinite(value) and math.isfinite(stderr) and alpha_k > 0:
            z = _normal_quantile(1 - alpha_k)
            low, high = max(low, float(value - z * stderr)), min(high, float(value + z * stderr))
        self._look(n, low, high)

    def _look(self, n: int, low: float, high: float) -> None:
        status = self._status(low, high) if self.decides else CONTINUE
        if self.decides and status == CONTINUE and n >= self.max_n:
            status = FAIL  # not shown within the budget: fail-closed
        self.looks.append(Look(n, low, high, status))

    def _status(self, low: float, high: float) -> str:
        threshold, pass_side, _ = self.rule.on_mean()
        if self.rule.kind == "max_regression" and not self.paired:
            raise ValueError("an allowed regression is decided on paired differences; other sequences take min/max")
        shown_pass = low > threshold if pass_side == "low" else high < threshold
        shown_fail = high <= threshold if pass_side == "low" else low >= threshold
        return FAIL if shown_fail else PASS if shown_pass else CONTINUE

    def metrics(self) -> dict[str, float]:
        """`<metric>_anytime_low/_high` and `<metric>_anytime_confidence` (what harness.gate reads)."""
        if not self.looks:
            return {}
        last = self.looks[-1]
        out = {f"{self.metric}_anytime_confidence": self.rule.confidence}
        if math.isfinite(last.low):
            out[f"{self.metric}_anytime_low"] = last.low
        if math.isfinite(last.high):
            out[f"{self.metric}_anytime_high"] = last.high
        return out

    def to_dict(self) -> dict:
        return {"metric": self.metric, "method": self.method, "decides": self.decides, "max_n": self.max_n,
                "planned_n": self.plan_n, "rule": asdict(self.rule), "status": self.status, "looks": [asdict(look) for look in self.looks]}


PLAN_FIRST_ITEMS = 8  # a comparison is known by its first items (and its judge): what a continued run shares


@dataclass(frozen=True)
class SequentialPlan:
    """What a sequential test was first run with: its budget (the bets' horizon and the spending's end) and its
    batch (where it looked). A continued test looks where the first run looked, up to the planned budget."""

    budget: int
    batch: int

    def next_look(self, seen: int, batch: int, max_n: int) -> int:
        """The look after `seen` items: on the planned grid (every `self.batch`, and the planned budget itself)
        up to the planned budget, then every `batch`; never past `max_n`."""
        if seen < self.budget:
            return min(seen + self.batch, self.budget, max_n)
        return min(seen + batch, max_n)


def recorded_plan(cache_dir: Path | None, identity: Mapping[str, Any], budget: int, batch: int) -> SequentialPlan:
    """The plan this comparison's sequential test was first run with, so that a run with a raised budget continues
    that test instead of starting a new one on prompts it already judged (a second test on the same prompts, after
    seeing the first one's result, is a second chance to pass). The bets and the alpha spending stay tuned to the
    first budget and the looks stay where the first run took them: the confidence sequence is valid at every n, so
    continuing past the budget keeps the error rate; the spending's alpha is used up there, so a spending-bounded
    metric (LC, style-controlled) keeps the bounds it had at that budget. Recorded once, never overwritten, under
    `<cache_dir>/sequential_plans/` by `identity` (the comparison: eval, judge, first items); without a cache
    every run plans with its own budget. Deleting the record starts a new test. A record that is not a plan is an
    input error naming the file (a hand edit must not silently start a new test)."""
    if cache_dir is None:
        return SequentialPlan(budget, batch)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "sequential_plans" / f"{key}.json"
    # first writer wins: a concurrent run of the same comparison reads the plan the other one recorded
    create_json_exclusive(path, {"budget": budget, "batch": batch, "identity": identity})
    try:
        recorded = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessInputError(f"{path}: unreadable sequential plan record ({exc}); delete it to start a new test "
                                "on these prompts") from None
    values = [recorded.get(k) if isinstance(recorded, dict) else None for k in ("budget", "batch")]
    if not all(type(v) is int and v > 0 for v in values):
        raise HarnessInputError(f"{path}: not a sequential plan record (budget and batch must be positive integers, "
                                f"got {values}); delete it to start a new test on these prompts")
    return SequentialPlan(*values)


def tracked_metrics(targets: dict[str, list[SequentialRule]], bounded: list[str], betting: set[str], max_n: int,
                    confidence: float, scales: dict[str, float] | None = None,
                    paired: Collection[str] = (), planned_n: int = 0) -> list[MetricSequence]:
    """One sequence per (metric, rule) the gate reads, and one per other `bounded` metric at `confidence`
    (recorded so that a later re-gate finds anytime bounds, never a fixed-n bound read after stopping).
    `paired`: metrics whose scores are per-item paired differences (betting on [-1, 1]); `planned_n`: the
    budget the test was first planned with (`recorded_plan`), when another than max_n."""
    scales = scales or {}
    out = []
    for metric in dict.fromkeys([*targets, *bounded]):
        method: Literal["betting", "spending"] = "betting" if metric in betting else "spending"

        def sequence(rule: SequentialRule, decides: bool) -> MetricSequence:
            return MetricSequence(metric, rule, method, max_n, decides, scales.get(metric, 1.0), paired=metric in paired,
                                  planned_n=planned_n)

        rules = targets.get(metric) or []
        out += [sequence(r, True) for r in rules] or [sequence(SequentialRule("min", -math.inf, confidence, "recorded"), False)]
    return out


def sequence_metrics(prefix: str, sequences: list[MetricSequence], n_used: int, max_n: int,
                     judge_calls: int | None = None, unit: Literal["prompts", "items"] = "prompts") -> dict[str, float]:
    """What the eval records: per metric, the bounds of its strictest rule (highest confidence; a bound at a
    higher level is valid at any lower one), and `<prefix>/sequential_*` about the stop (`unit`: judged
    prompts, or a domain task's documents)."""
    out: dict[str, float] = {}
    for seq in sorted(sequences, key=lambda s: (s.decides, s.rule.confidence)):
        out.update(seq.metrics())  # later (stricter) entries win
    decided = [s for s in sequences if s.decides]
    planned = max((s.plan_n for s in sequences), default=max_n)
    out |= {f"{prefix}/sequential_{unit}_used": float(n_used), f"{prefix}/sequential_max_{unit}": float(max_n),
            f"{prefix}/sequential_planned_{unit}": float(planned),
            f"{prefix}/sequential_stopped_early": float(n_used < max_n and bool(decided)
                                                        and all(s.status != CONTINUE for s in decided))}
    if judge_calls is not None:
        out[f"{prefix}/sequential_judge_calls"] = float(judge_calls)
    return out

"""Win rates a gate can read: raw, length-controlled (LC) and style-controlled, each with an honest
standard error, and LC and style-controlled only where the data identify them.

Input: one alpaca-eval preference per prompt (1 = the reference, output_1, wins; 2 = the policy,
output_2, wins; 1.5 or 0 = draw; fractions allowed; NaN = no verdict, left out) and the two answers'
lengths in characters (and, for style control, their texts). A draw counts half a win, as alpaca-eval
scores it: every statistic here works on y = preference - 1 in [0, 1].

Raw win rate: 100 * mean(y). Its standard error is the larger of alpaca-eval's (the SEM of y,
`standard_error` on the leaderboard) and the Wilson score interval's wider side / z for the wins
among the decisive verdicts, scaled by their share: identical in the middle of the range, wider
near 0 and 100, where the SEM is overconfident (a policy that wins all 24 prompts has SEM 0;
Wilson's lower bound is 86%). Draws are not binomial outcomes: identical answers judged all draws
keep stderr 0.

LC win rate: the judge's verdict regressed, by an UNPENALISED logistic regression (scikit-learn,
fractional response: each prompt enters as a win with weight y and a loss with weight 1 - y), on
x = tanh(d / sd(d)), d = policy chars - reference chars (alpaca-eval's length feature), with an
intercept; LC is the fitted win rate at d = 0. The feature is centred in the design, which only
conditions the fit (with no penalty, predictions do not depend on it); what makes LC mean something
is where the data are:

- identified only when at least `min_side(n) = max(3, ceil(0.15 n))` prompts lie on each side of
  d = 0 (a prompt with equal lengths counts on both sides). Otherwise LC at equal length is an
  extrapolation of the model's shape: alpaca-eval's own GLM on a policy that was always longer and a
  judge that only liked length gave LC 0.35 [0.01, 2.9] (docs/lc_validity.md). The 15% share comes
  from the recovery study: with a judge whose length preference has another shape than the fit's,
  the bias at n = 805 grew from 0.35 pp (20% of prompts on the minority side) to 2.2 (12%), 2.9 (9%)
  and 4.2 (7%), beyond what the interval covers;
- not identified when every verdict is the same while the lengths differ (the old code set LC =
  raw there: a length-gamed policy that won every prompt got LC 100 [100, 100]), or when the fit
  separates (the verdicts are perfectly predicted by length: no finite maximum likelihood);
- equal to raw when every length difference is zero (nothing to control: the data sit at d = 0).

Style-controlled win rate (Arena-Hard's style control, for one model against one baseline): the
same regression with the markdown differences added to LC's length feature: for headers, list items
and bold spans (counted after removing code blocks, with Arena-Hard's regexes), the density per
character of each answer, and the feature (dp - dr) / (dp + dr + 1) as Arena-Hard builds it; every
feature standardised; the controlled win rate is the model at zero difference in every feature.
Two departures from Arena-Hard, both deliberate: its length feature is (p - r) / (p + r); LC's is
kept here so that LC and style-controlled differ only by the markdown control (without texts they
are equal); and Arena-Hard centres its features over all models' battles, which with one model
would evaluate at the mean difference, i.e. not control at all. A markdown feature that differs on
fewer than `min_side(n)` prompts is left out (it cannot be estimated and barely moves the
prediction; `notes` says so); every feature kept must pass the LC side rule.

Standard errors of LC and style-controlled: delta method on the logit scale with an HC3 sandwich
(robust to the fractional response and to a misspecified shape; HC3's leverage correction is what
keeps n = 24 near its level), the interval mapped back to percent, and the stderr reported as the
wider side / z, so `value -/+ z * stderr` contains the logit-scale interval (conservative on the
narrow side). raw_minus_lc's stderr is paired: the two estimators' per-prompt influence functions,
each scaled to its reported stderr, differenced and summed in square. The `_ci_low` / `_ci_high`
keys are `value -/+ z * stderr` (clipped to 0..100 for win rates): the interval the report shows is
the one the gate computes.

`n_bootstrap > 0` adds a paired bootstrap over prompts; each stderr becomes the larger of the
analytic one and the bootstrap standard deviation (the bootstrap can only widen). The recovery and
coverage figures are in docs/lc_validity.md (`python -m bench.lc_validity`).
"""
from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np

from evals.metrics import register_metric

Z95 = NormalDist().inv_cdf(0.975)
MIN_SIDE_COUNT = 3  # fewest prompts on each side of zero difference, at any n
MIN_SIDE_SHARE = 0.15  # ... and as a share of the judged prompts (see the module docstring)
SEPARATION_LOGIT = 20.0  # |fitted logit| beyond this: the fit is running off to infinity (separation)
MAX_CONDITION = 1e8  # of the standardised information matrix: beyond, the features are collinear

LC = "winrate/lc_win_rate_pct"
STYLE = "winrate/style_controlled_pct"
RAW = "winrate/win_rate_pct"
GAP = "winrate/raw_minus_lc_pct"
STYLE_FEATURES = ("length", "headers", "list_items", "bold")

_NOT_IDENTIFIED = ("not identified by these answers (see winrate/{flag} and the report): too few prompts on one "
                   "side of equal {what}, one verdict everywhere, or verdicts perfectly predicted by {what}")

register_metric(RAW, higher_is_better=True, unit="pct",
                description="Raw judge win rate of the policy over the reference (draws count half), AlpacaEval style.", neutral=50.0)
register_metric(LC, higher_is_better=True, unit="pct",
                description="Length-controlled win rate: unpenalised logistic fit of the verdict on tanh(standardised "
                            "length difference), evaluated at equal length; missing when not identified",
                missing_reason=_NOT_IDENTIFIED.format(flag="lc_identified", what="length"), neutral=50.0)
register_metric("winrate/lc_identified", higher_is_better=True, unit="flag",
                description="1.0 when the answers' lengths identify the LC win rate (enough prompts on both sides of "
                            "equal length, verdicts not all equal, no separation), else 0.0")
register_metric(STYLE, higher_is_better=True, unit="pct",
                description="Style-controlled win rate (Arena-Hard): logistic fit on length and markdown (headers, "
                            "list items, bold) differences, evaluated at zero difference; missing when not identified",
                missing_reason=_NOT_IDENTIFIED.format(flag="style_identified", what="style"), neutral=50.0)
register_metric("winrate/style_identified", higher_is_better=True, unit="flag",
                description="1.0 when the answers identify the style-controlled win rate, else 0.0")
register_metric(GAP, higher_is_better=False, unit="pct",
                description="raw win rate minus LC win rate (paired stderr): a large gap means verbosity bought the win",
                missing_reason=_NOT_IDENTIFIED.format(flag="lc_identified", what="length"), neutral=0.0)
register_metric("winrate/policy_longer_pct", higher_is_better=None, unit="pct",
                description="share of judged prompts where the policy's answer has more characters than the reference's")
register_metric("winrate/policy_shorter_pct", higher_is_better=None, unit="pct",
                description="share of judged prompts where the policy's answer has fewer characters than the reference's")


@dataclass(frozen=True)
class WinrateStatistics:
    """`summary`: flat `winrate/...` floats (what MLflow, the gate and the planner read); LC and style
    keys are absent when not identified, and `reasons` says why, keyed by the missing metric."""

    summary: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)
    style_features: tuple[str, ...] = ()  # the features the style fit used
    notes: tuple[str, ...] = ()  # e.g. markdown features left out, with why

    @property
    def lc_reason(self) -> str:
        return self.reasons.get(LC, "")

    @property
    def style_reason(self) -> str:
        return self.reasons.get(STYLE, "")

    def summary_with_reasons(self) -> dict[str, float | str]:
        """The summary plus `<metric>_missing_reason` strings, which harness.gate quotes when a rule's metric is missing."""
        return self.summary | {f"{key}_missing_reason": why for key, why in self.reasons.items()}


# --------------------------------------------------------------------------------------------
# features


_CODE_BLOCK = re.compile(r"```([^`]*)```")
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST_ITEM = (re.compile(r"^\s*\d+\.\s", re.MULTILINE), re.compile(r"^\s*[-*+]\s", re.MULTILINE))
_BOLD = (re.compile(r"\*\*[^*\n]+\*\*"), re.compile(r"__[^_\n]+__"))


@functools.lru_cache(maxsize=1 << 13)  # a sequential eval counts the same answers again at every look
def markdown_counts(text: str) -> tuple[int, int, int]:
    """(headers, list items, bold spans), Arena-Hard's `count_markdown_elements` after removing code blocks."""
    text = _CODE_BLOCK.sub("", text)
    return (len(_HEADER.findall(text)), sum(len(p.findall(text)) for p in _LIST_ITEM),
            sum(len(p.findall(text)) for p in _BOLD))


def min_side(n: int) -> int:
    """Fewest prompts needed on each side of zero difference for a controlled win rate to be identified."""
    return max(MIN_SIDE_COUNT, math.ceil(MIN_SIDE_SHARE * n))


def _side_reason(name: str, diff: np.ndarray) -> str:
    n = len(diff)
    more, less = int((diff > 0).sum()), int((diff < 0).sum())
    equal = n - more - less
    need = min_side(n)
    if more + equal >= need and less + equal >= need:
        return ""
    return (f"the {name} difference (policy minus reference) is positive on {more}, negative on {less} and zero "
            f"on {equal} of {n} prompts: the win rate at zero difference would be an extrapolation; it needs at "
            f"least {need} prompts on each side (zero counts on both)")


# --------------------------------------------------------------------------------------------
# the fit


@functools.cache
def _logistic_regression():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression, ConvergenceWarning


def _fit_logit(features: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """(intercept, slopes) of the unpenalised logistic regression of fractional y on `features`, by
    scikit-learn (C=inf is sklearn's spelling of no penalty; the intercept is never penalised then).
    Each row enters twice: a win weighted y and a loss weighted 1 - y, as alpaca-eval's
    `is_ytrue_proba` fit does. None when the solver does not converge."""
    LogisticRegression, ConvergenceWarning = _logistic_regression()
    n = len(y)
    weight = np.concatenate([y, 1 - y])
    keep = weight > 0
    design = np.concatenate([features, features])[keep]
    label = np.concatenate([np.ones(n), np.zeros(n)])[keep]
    model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-10, max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model.fit(design, label, sample_weight=weight[keep])
        except (ConvergenceWarning, ValueError, np.linalg.LinAlgError):
            return None
    return np.concatenate([model.intercept_, model.coef_[0]])


@dataclass(frozen=True)
class _Estimate:
    value_pct: float
    stderr_pct: float
    influence_pct: np.ndarray  # per prompt, scaled so that its sum of squares is stderr_pct ** 2


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _controlled_at_zero(features: np.ndarray, y: np.ndarray, what: str) -> _Estimate | str:
    """The fitted win rate at zero in every feature (zero = no difference), or why it cannot be given."""
    n = len(y)
    scale = features.std(axis=0, ddof=1)
    centre = features.mean(axis=0)
    standard = (features - centre) / scale
    beta = _fit_logit(standard, y)
    separated = (f"the verdicts are perfectly predicted by {what} (separation): the logistic fit has no finite "
                 "maximum, so the win rate at zero difference is not determined")
    if beta is None or not np.all(np.isfinite(beta)):
        return separated
    design = np.column_stack([np.ones(n), standard])
    eta = design @ beta
    if np.abs(eta).max() > SEPARATION_LOGIT:
        return separated
    p = _expit(eta)
    w = p * (1 - p)
    information = (design * w[:, None]).T @ design
    if np.linalg.cond(information) > MAX_CONDITION:
        return f"the {what} features are collinear: their effects cannot be told apart"
    inverse = np.linalg.inv(information)
    at_zero = np.concatenate([[1.0], -centre / scale])  # zero difference, in the standardised coordinates
    eta0 = float(at_zero @ beta)
    p0 = float(_expit(eta0))
    # HC3: each prompt's score contribution divided by (1 - its leverage), the small-sample sandwich
    leverage = np.clip(np.einsum("ij,jk,ik->i", design, inverse, design) * w, 0.0, 0.99)
    influence_logit = (design @ (inverse @ at_zero)) * (y - p) / (1 - leverage)
    se_logit = float(np.sqrt(np.sum(influence_logit**2)))
    low, high = _expit(eta0 - Z95 * se_logit), _expit(eta0 + Z95 * se_logit)
    stderr_pct = 100 * float(max(p0 - low, high - p0)) / Z95
    influence_pct = 100 * p0 * (1 - p0) * influence_logit
    norm = float(np.sqrt(np.sum(influence_pct**2)))
    if norm > 0:
        influence_pct = influence_pct * (stderr_pct / norm)
    return _Estimate(100 * p0, stderr_pct, influence_pct)


def _wilson_stderr(share: float, n: int) -> float:
    """The Wilson score interval's wider side / z for a binomial share of n."""
    z2 = Z95 * Z95
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(share - (centre - half), (centre + half) - share) / Z95


def _raw(y: np.ndarray) -> _Estimate:
    """The mean verdict. Its stderr is the SEM, floored by Wilson on the decisive verdicts: raw =
    (draw share) / 2 + (decisive share) x (wins among the decisive), and the wins-among-decisive
    share is binomial, whose SEM collapses to 0 at 0% or 100% (a policy that won all 24 prompts)
    where Wilson does not. Draws and fractional verdicts are not binomial outcomes and enter through
    the SEM only, so identical answers judged all draws keep stderr 0."""
    n = len(y)
    mean = float(y.mean())
    sem = float(y.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    decisive = y[(y == 0) | (y == 1)]
    wilson = len(decisive) / n * _wilson_stderr(float(decisive.mean()), len(decisive)) if len(decisive) else 0.0
    stderr = max(sem, wilson) if n > 1 else wilson
    influence = (y - mean) / n * math.sqrt(n / (n - 1)) if n > 1 else np.zeros(n)
    norm = float(np.sqrt(np.sum(influence**2)))
    influence = influence * (stderr / norm) if norm > 0 else influence
    return _Estimate(100 * mean, 100 * stderr, 100 * influence)


def _kept_features(diffs: dict[str, np.ndarray], n: int, notes: list[str]) -> dict[str, np.ndarray]:
    """The difference features a controlled fit uses: the first (length) whenever it varies; the others when
    they differ on enough prompts to be estimated (else left out, with a note)."""
    kept = {}
    for i, (name, diff) in enumerate(diffs.items()):
        if not np.any(diff):
            continue  # zero everywhere: the data already sit at the evaluation point for this feature
        if i > 0 and np.count_nonzero(diff) < min_side(n):  # length (the first) is never left out
            notes.append(f"style: {name} differ on {np.count_nonzero(diff)} of {n} prompts (< {min_side(n)}), "
                         "left out of the fit")
            continue
        kept[name] = diff
    return kept


def _controlled(diffs: dict[str, np.ndarray], y: np.ndarray, what: str, raw: _Estimate,
                notes: list[str]) -> tuple[_Estimate | str, tuple[str, ...]]:
    """Controlled win rate on the named difference features (the first is length, always kept)."""
    if all(not np.any(d) for d in diffs.values()):
        return raw, ()  # every difference is zero: the data sit at the evaluation point, LC = raw
    kept = _kept_features(diffs, len(y), notes)
    if not kept:
        return raw, ()
    if np.all(y == y[0]):
        return (f"every verdict is the same ({100 * y[0]:g}% for the policy) while the {what} differs: the data "
                f"cannot say how the verdict depends on {what}"), tuple(kept)
    for name, diff in kept.items():
        reason = _side_reason(name, diff)
        if reason:
            return reason, tuple(kept)
    return _controlled_at_zero(np.column_stack(list(kept.values())), y, what), tuple(kept)


def _relative(policy: np.ndarray, reference: np.ndarray, plus: float = 0.0) -> np.ndarray:
    total = policy + reference + plus
    return np.divide(policy - reference, total, out=np.zeros(len(total)), where=total > 0)


def _put(summary: dict[str, float], key: str, estimate: _Estimate, bounds: tuple[float, float] = (0.0, 100.0)) -> None:
    low, high = bounds
    value, stderr = float(estimate.value_pct), float(estimate.stderr_pct)
    summary[key] = value
    summary[f"{key}_stderr"] = stderr
    summary[f"{key}_ci_low"] = max(low, value - Z95 * stderr)
    summary[f"{key}_ci_high"] = min(high, value + Z95 * stderr)


@dataclass(frozen=True)
class _Rows:
    y: np.ndarray
    reference_chars: np.ndarray
    policy_chars: np.ndarray
    reference_markdown: np.ndarray | None  # n x 3 counts
    policy_markdown: np.ndarray | None

    def take(self, index: np.ndarray) -> "_Rows":
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return _Rows(self.y[index], self.reference_chars[index], self.policy_chars[index],
                     pick(self.reference_markdown), pick(self.policy_markdown))


def _analyse(rows: _Rows) -> tuple[dict[str, float], dict[str, str], dict[str, _Estimate], tuple[str, ...], list[str]]:
    y, n = rows.y, len(rows.y)
    notes: list[str] = []
    raw = _raw(y)
    summary: dict[str, float] = {"winrate/n": float(n)}
    _put(summary, RAW, raw)
    d = rows.policy_chars - rows.reference_chars
    summary["winrate/policy_longer_pct"] = 100 * float(np.mean(d > 0))
    summary["winrate/policy_shorter_pct"] = 100 * float(np.mean(d < 0))
    reasons: dict[str, str] = {}
    estimates = {RAW: raw}

    sd = d.std(ddof=1) if n > 1 else 0.0
    length_feature = np.tanh(d / sd) if sd > 0 else d.astype(float)
    lc, _ = _controlled({"length": length_feature}, y, "length", raw, notes)
    summary["winrate/lc_identified"] = float(not isinstance(lc, str))
    if isinstance(lc, str):
        reasons[LC] = reasons[GAP] = lc
    else:
        estimates[LC] = lc
        _put(summary, LC, lc)
        gap_influence = raw.influence_pct - lc.influence_pct
        gap = _Estimate(raw.value_pct - lc.value_pct, float(np.sqrt(np.sum(gap_influence**2))), gap_influence)
        estimates[GAP] = gap
        _put(summary, GAP, gap, bounds=(-100.0, 100.0))

    diffs = {"length": length_feature}
    if rows.policy_markdown is not None:
        pol_density = _density(rows.policy_markdown, rows.policy_chars)
        ref_density = _density(rows.reference_markdown, rows.reference_chars)
        for j, name in enumerate(STYLE_FEATURES[1:]):
            diffs[name] = _relative(pol_density[:, j], ref_density[:, j], plus=1.0)
    style_notes: list[str] = []
    if not isinstance(lc, str) and list(_kept_features(diffs, n, style_notes)) == ["length"]:
        # no markdown feature varies enough to enter the fit: style control is the LC fit itself (same
        # feature, same verdicts), so it is not fitted twice
        style, used = lc, ("length",)
        notes += style_notes
    else:
        style, used = _controlled(diffs, y, "style", raw, notes)
    summary["winrate/style_identified"] = float(not isinstance(style, str))
    if isinstance(style, str):
        reasons[STYLE] = style
    else:
        estimates[STYLE] = style
        _put(summary, STYLE, style)
    return summary, reasons, estimates, used, notes


def _density(counts: np.ndarray, chars: np.ndarray) -> np.ndarray:
    return np.divide(counts, chars[:, None], out=np.zeros(counts.shape), where=chars[:, None] > 0)


def winrate_statistics(
    verdicts: Sequence[float],
    reference_chars: Sequence[float],
    policy_chars: Sequence[float],
    *,
    reference_texts: Sequence[str] | None = None,
    policy_texts: Sequence[str] | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> WinrateStatistics:
    """Raw, LC and style-controlled win rates of the policy over the reference, in percent, with stderrs.

    `verdicts`: alpaca-eval preferences per prompt (1 reference wins, 2 policy wins, 1.5 or 0 draw,
    NaN no verdict). Lengths in characters. Texts (both or neither) add the markdown features to
    style control. Pure and fast (~3-6 ms at n <= 100 without bootstrap): the gate planner calls it
    in its simulations.
    """
    preference = np.asarray(verdicts, dtype=float)
    reference_chars = np.asarray(reference_chars, dtype=float)
    policy_chars = np.asarray(policy_chars, dtype=float)
    if not (len(preference) == len(reference_chars) == len(policy_chars)):
        raise ValueError(f"verdicts ({len(preference)}), reference_chars ({len(reference_chars)}) and policy_chars "
                         f"({len(policy_chars)}) must have one entry per prompt")
    if (reference_texts is None) != (policy_texts is None):
        raise ValueError("give both reference_texts and policy_texts, or neither")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    preference = np.where(preference == 0, 1.5, preference)  # alpaca-eval's legacy draw
    judged = np.isfinite(preference)
    bad = judged & ((preference < 1) | (preference > 2))
    if bad.any():
        raise ValueError(f"verdict {preference[bad][0]!r} is outside alpaca-eval's scale (1 = reference wins, "
                         "2 = policy wins, 1.5 or 0 = draw, NaN = no verdict)")
    if not judged.any():
        raise ValueError("no judged prompts: every verdict is missing")
    reference_markdown = policy_markdown = None
    if reference_texts is not None:
        if not (len(reference_texts) == len(policy_texts) == len(preference)):
            raise ValueError("reference_texts and policy_texts need one entry per prompt")
        reference_markdown = np.array([markdown_counts(t) for t in reference_texts], dtype=float).reshape(-1, 3)
        policy_markdown = np.array([markdown_counts(t) for t in policy_texts], dtype=float).reshape(-1, 3)
    rows = _Rows(preference - 1, reference_chars, policy_chars, reference_markdown, policy_markdown).take(judged)

    summary, reasons, estimates, used, notes = _analyse(rows)
    if n_bootstrap > 0:
        _widen_by_bootstrap(rows, summary, estimates, n_bootstrap, seed)
    return WinrateStatistics(summary, reasons, used, tuple(notes))


def _widen_by_bootstrap(rows: _Rows, summary: dict[str, float], estimates: dict[str, _Estimate],
                        n_bootstrap: int, seed: int) -> None:
    """Paired bootstrap over prompts: a stderr becomes the bootstrap SD where that is larger. Replicates
    in which a controlled rate is not identified are left out of that rate's SD."""
    rng = np.random.default_rng(seed)
    n = len(rows.y)
    draws: dict[str, list[float]] = {key: [] for key in estimates}
    for _ in range(n_bootstrap):
        replicate, _, _, _, _ = _analyse(rows.take(rng.integers(0, n, size=n)))
        for key in draws:
            if key in replicate:
                draws[key].append(replicate[key])
    for key, values in draws.items():
        if len(values) > 1:
            spread = float(np.std(values, ddof=1))
            if spread > estimates[key].stderr_pct:
                widened = _Estimate(estimates[key].value_pct, spread, estimates[key].influence_pct)
                _put(summary, key, widened, bounds=(-100.0, 100.0) if key == GAP else (0.0, 100.0))

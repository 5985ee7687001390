"""Does the LC win rate recover a known quality effect, or say it cannot? A recovery study.

    python -m bench.lc_validity               # the full study (400 simulations a cell, ~65 s on 2 cores)
    python -m bench.lc_validity --sims 200    # fewer simulations

Synthetic judges with a known quality effect and a known length effect judge synthetic answer
pairs in four length regimes (the policy always longer, always shorter, straddling the reference,
mostly longer: shorter on ~16% of prompts, near the identification rule's edge) at n = 24, 100 and
805 prompts; every simulated eval goes through `evals.winrate_stats.
winrate_statistics`, the function the runs and the gate planner use. The truth is the judge's
win rate at equal length (draws count half): what LC is meant to estimate. The figures are in
docs/lc_validity.md; tests/evals/test_lc_validity.py runs the same code with fewer simulations.

The judge: a draw with probability `tie_share`, otherwise the policy wins with probability
sigmoid(q + length_effect * h(d)), d = policy chars - reference chars; q is set so the win rate at
d = 0 is `quality_pct`. h is tanh(d / 300 chars) (alpaca-eval's shape, a fixed scale the fit does not
know) or log2(policy / reference chars) (another shape: the fit is then misspecified).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from evals.winrate_stats import GAP, LC, RAW, STYLE, Z95, winrate_statistics

REGIMES = ("longer", "shorter", "straddling", "mostly_longer")
SIZES = (24, 100, 805)
REFERENCE_LOG_CHARS = (6.0, 0.6)  # reference answers: lognormal characters, median ~400
ONE_SIDED_Z95 = NormalDist().inv_cdf(0.95)


@dataclass(frozen=True)
class Judge:
    quality_pct: float  # the judge's win rate for the policy at equal length (draws count half): the truth
    length_effect: float  # logit per unit of the shape h(d)
    shape: str = "tanh300"  # "tanh300" or "log2_ratio"
    tie_share: float = 0.1

    @property
    def label(self) -> str:
        return f"quality {self.quality_pct:g}%, length {self.length_effect:g} x {self.shape}"

    def quality_logit(self) -> float:
        p = (self.quality_pct / 100 - self.tie_share / 2) / (1 - self.tie_share)
        return math.log(p / (1 - p))

    def win_probability(self, reference_chars: np.ndarray, policy_chars: np.ndarray) -> np.ndarray:
        """Expected y (policy wins = 1, draw = 1/2) for each pair."""
        d = policy_chars - reference_chars
        h = np.tanh(d / 300.0) if self.shape == "tanh300" else np.log2(policy_chars / reference_chars)
        decisive = 1 / (1 + np.exp(-(self.quality_logit() + self.length_effect * h)))
        return self.tie_share / 2 + (1 - self.tie_share) * decisive


def answer_lengths(regime: str, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference chars, policy chars) with the policy/reference ratio of the regime."""
    reference = np.round(np.exp(rng.normal(*REFERENCE_LOG_CHARS, size=shape)))
    if regime == "longer":
        ratio = np.exp(rng.uniform(math.log(1.05), math.log(2.0), size=shape))
    elif regime == "shorter":
        ratio = np.exp(rng.uniform(math.log(0.5), math.log(0.95), size=shape))
    elif regime == "straddling":  # the policy shorter on ~39% of prompts
        ratio = np.exp(rng.normal(0.1, 0.35, size=shape))
    elif regime == "mostly_longer":  # shorter on ~16%: near the identification rule's 15% edge
        ratio = np.exp(rng.normal(0.35, 0.35, size=shape))
    else:
        raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    return reference, np.maximum(1.0, np.round(reference * ratio))


def verdicts(judge: Judge, reference: np.ndarray, policy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """alpaca-eval preferences (1 reference wins, 1.5 draw, 2 policy wins), one judge draw per pair."""
    tie = rng.random(reference.shape) < judge.tie_share
    decisive = (judge.win_probability(reference, policy) - judge.tie_share / 2) / (1 - judge.tie_share)
    wins = rng.random(reference.shape) < decisive
    return np.where(tie, 1.5, np.where(wins, 2.0, 1.0))


def expected_raw_pct(judge: Judge, regime: str, seed: int = 12345) -> float:
    """The raw win rate's estimand for a regime: the judge's mean over the population of answer pairs."""
    reference, policy = answer_lengths(regime, (400_000,), np.random.default_rng(seed))
    return float(100 * judge.win_probability(reference, policy).mean())


@dataclass
class Cell:
    regime: str
    n: int
    judge: Judge
    sims: int
    identified_pct: float
    style_identified_pct: float
    truth_pct: float
    raw_mean: float
    raw_coverage: float
    lc_mean: float = math.nan
    lc_sd: float = math.nan
    lc_median_stderr: float = math.nan
    lc_coverage: float = math.nan  # of the 95% interval value -/+ z * stderr, among identified simulations
    lc_low_miss: float = math.nan  # lower one-sided 95% bound above the truth (a false "better than")
    lc_high_miss: float = math.nan  # upper one-sided 95% bound below the truth
    gap_coverage: float = math.nan  # raw_minus_lc against (expected raw - truth)
    style_mean: float = math.nan
    style_coverage: float = math.nan
    n_identified: int = 0
    n_style_identified: int = 0

    @property
    def lc_bias(self) -> float:
        return self.lc_mean - self.truth_pct

    @property
    def style_bias(self) -> float:
        return self.style_mean - self.truth_pct

    def bias_tolerance(self, floor_pp: float) -> float:
        """Stated tolerance: `floor_pp`, or three Monte-Carlo standard errors of the mean if larger."""
        return max(floor_pp, 3 * self.lc_sd / math.sqrt(max(self.n_identified, 1)))


def _covered(values: np.ndarray, stderrs: np.ndarray, truth: float) -> float:
    return float(np.mean(np.abs(values - truth) <= Z95 * stderrs)) if len(values) else math.nan


def recovery(regime: str, n: int, judge: Judge, sims: int, seed: int = 0) -> Cell:
    """`sims` simulated evals of `n` prompts: how often LC is identified, and, when it is, its bias and coverage."""
    rng = np.random.default_rng([seed, n, REGIMES.index(regime)])
    reference, policy = answer_lengths(regime, (sims, n), rng)
    preference = verdicts(judge, reference, policy, rng)
    expected_raw = expected_raw_pct(judge, regime)
    got: dict[str, list[tuple[float, float]]] = {RAW: [], LC: [], STYLE: [], GAP: []}
    for i in range(sims):
        summary = winrate_statistics(preference[i], reference[i], policy[i]).summary
        for key in got:
            if key in summary:
                got[key].append((summary[key], summary[f"{key}_stderr"]))
    arrays = {k: np.array(v).reshape(-1, 2) for k, v in got.items()}
    raw, lc, style, gap = arrays[RAW], arrays[LC], arrays[STYLE], arrays[GAP]
    cell = Cell(regime, n, judge, sims, identified_pct=100 * len(lc) / sims, style_identified_pct=100 * len(style) / sims,
                truth_pct=judge.quality_pct, raw_mean=float(raw[:, 0].mean()),
                raw_coverage=_covered(raw[:, 0], raw[:, 1], expected_raw), n_identified=len(lc),
                n_style_identified=len(style))
    if len(lc):
        truth = judge.quality_pct
        cell.lc_mean, cell.lc_sd = float(lc[:, 0].mean()), float(lc[:, 0].std(ddof=1)) if len(lc) > 1 else 0.0
        cell.lc_median_stderr = float(np.median(lc[:, 1]))
        cell.lc_coverage = _covered(lc[:, 0], lc[:, 1], truth)
        cell.lc_low_miss = float(np.mean(lc[:, 0] - ONE_SIDED_Z95 * lc[:, 1] > truth))
        cell.lc_high_miss = float(np.mean(lc[:, 0] + ONE_SIDED_Z95 * lc[:, 1] < truth))
        cell.gap_coverage = _covered(gap[:, 0], gap[:, 1], expected_raw - truth)
    if len(style):
        cell.style_mean = float(style[:, 0].mean())
        cell.style_coverage = _covered(style[:, 0], style[:, 1], judge.quality_pct)
    return cell


def coverage_floor(level: float, k: int) -> float:
    """The level minus three binomial Monte-Carlo standard errors over k simulations."""
    return level - 3 * math.sqrt(level * (1 - level) / max(k, 1))


def _texts(chars: np.ndarray, list_items: np.ndarray) -> list[str]:
    """Synthetic answers with `list_items` markdown list items, padded with prose to `chars` characters."""
    out = []
    for length, items in zip(chars.astype(int), list_items.astype(int)):
        body = "- item\n" * items
        out.append(body + "x" * max(0, length - len(body)))
    return out


@dataclass
class StyleCell:
    n: int
    sims: int
    truth_pct: float
    raw_mean: float
    lc_mean: float
    lc_coverage: float
    style_identified_pct: float
    style_mean: float
    style_sd: float
    style_coverage: float
    n_style_identified: int


def style_recovery(n: int, sims: int, seed: int = 0, quality_pct: float = 60.0, length_effect: float = 1.0,
                   list_effect: float = 1.5) -> StyleCell:
    """A judge that likes length AND markdown lists: the policy adds or drops 0-4 list items per answer
    (straddling), the judge's logit grows by `list_effect * tanh(extra items / 2)`. The truth is the
    judge's win rate at equal length and equal lists; LC (length only) misses the list preference,
    the style-controlled rate should not."""
    judge = Judge(quality_pct=quality_pct, length_effect=length_effect)
    rng = np.random.default_rng([seed, n, 7])
    reference, policy = answer_lengths("straddling", (sims, n), rng)
    reference_items = rng.integers(0, 6, size=(sims, n))
    policy_items = np.maximum(0, reference_items + rng.integers(-2, 5, size=(sims, n)))
    extra = policy_items - reference_items
    reference = np.maximum(reference, 8 * reference_items + 1)
    policy = np.maximum(policy, 8 * policy_items + 1)
    logit = judge.quality_logit() + length_effect * np.tanh((policy - reference) / 300) + list_effect * np.tanh(extra / 2)
    decisive = 1 / (1 + np.exp(-logit))
    tie = rng.random((sims, n)) < judge.tie_share
    preference = np.where(tie, 1.5, np.where(rng.random((sims, n)) < decisive, 2.0, 1.0))
    raw, lc, style = [], [], []
    for i in range(sims):
        result = winrate_statistics(preference[i], reference[i], policy[i],
                                    reference_texts=_texts(reference[i], reference_items[i]),
                                    policy_texts=_texts(policy[i], policy_items[i])).summary
        raw.append(result[RAW])
        if LC in result:
            lc.append((result[LC], result[f"{LC}_stderr"]))
        if STYLE in result:
            style.append((result[STYLE], result[f"{STYLE}_stderr"]))
    lc_a, style_a = np.array(lc).reshape(-1, 2), np.array(style).reshape(-1, 2)
    return StyleCell(n, sims, quality_pct, float(np.mean(raw)),
                     float(lc_a[:, 0].mean()) if len(lc_a) else math.nan, _covered(lc_a[:, 0], lc_a[:, 1], quality_pct),
                     100 * len(style_a) / sims, float(style_a[:, 0].mean()) if len(style_a) else math.nan,
                     float(style_a[:, 0].std(ddof=1)) if len(style_a) > 1 else math.nan,
                     _covered(style_a[:, 0], style_a[:, 1], quality_pct), len(style_a))


def style_table(cells: list[StyleCell]) -> str:
    lines = ["| n | raw mean | truth | LC mean (coverage) | style identified | style mean (bias) | style sd | "
             "style 95% coverage |", "|" + "---|" * 8]
    for c in cells:
        lines.append(f"| {c.n} | {_fmt(c.raw_mean)} | {_fmt(c.truth_pct)} | {_fmt(c.lc_mean)} "
                     f"({_fmt(100 * c.lc_coverage)}%) | {_fmt(c.style_identified_pct, 0)}% | {_fmt(c.style_mean)} "
                     f"({_fmt(c.style_mean - c.truth_pct, 2)}) | {_fmt(c.style_sd)} | {_fmt(100 * c.style_coverage)}% |")
    return "\n".join(lines)


def minority_share_study(sims: int, n: int = 805, seed: int = 0) -> list[dict]:
    """Why the identification rule asks for 15% of the prompts on each side: LC fitted WITHOUT the rule
    (evals.winrate_stats._controlled_at_zero directly) as the policy is shorter on fewer prompts, for
    a judge whose length preference has another shape than the fit's (logit 6 x (p - r) / (p + r))."""
    from evals.winrate_stats import _controlled_at_zero

    rows = []
    for shift in (0.15, 0.25, 0.35, 0.40, 0.45):
        rng = np.random.default_rng([seed, int(shift * 100)])
        reference = np.round(np.exp(rng.normal(*REFERENCE_LOG_CHARS, size=(sims, n))))
        policy = np.maximum(1.0, np.round(reference * np.exp(rng.normal(shift, 0.3, size=(sims, n)))))
        judge = Judge(quality_pct=60, length_effect=6.0)
        decisive = 1 / (1 + np.exp(-(judge.quality_logit() + 6.0 * (policy - reference) / (policy + reference))))
        tie = rng.random((sims, n)) < judge.tie_share
        y = np.where(tie, 0.5, (rng.random((sims, n)) < decisive).astype(float))
        values, covered = [], []
        for i in range(sims):
            d = policy[i] - reference[i]
            fit = _controlled_at_zero(np.tanh(d / d.std(ddof=1))[:, None], y[i], "length")
            if isinstance(fit, str):
                continue
            values.append(fit.value_pct)
            covered.append(abs(fit.value_pct - judge.quality_pct) <= Z95 * fit.stderr_pct)
        rows.append({"minority_pct": 100 * float(np.mean(policy < reference)), "bias": float(np.mean(values)) - 60,
                     "coverage": float(np.mean(covered)), "fits": len(values)})
    return rows


STUDY_JUDGES = (
    Judge(quality_pct=50, length_effect=1.5),  # a judge that only likes length: true LC 50
    Judge(quality_pct=65, length_effect=1.5),  # a better policy, and a length-loving judge
    Judge(quality_pct=65, length_effect=0.0),  # a better policy, a judge indifferent to length
)
MISSPECIFIED_JUDGES = (
    Judge(quality_pct=50, length_effect=1.5, shape="log2_ratio"),
    Judge(quality_pct=65, length_effect=1.5, shape="log2_ratio"),
)


def _fmt(x: float, digits: int = 1) -> str:
    return "—" if x != x else f"{x:.{digits}f}"


def table(cells: list[Cell]) -> str:
    header = ("| judge | regime | n | LC identified | raw mean (coverage) | truth | LC mean (bias) | LC sd "
              "| LC 95% coverage | low / high miss (5% each) | raw-LC coverage | style identified | style mean "
              "| style coverage |")
    lines = [header, "|" + "---|" * 14]
    for c in cells:
        lines.append(
            f"| {c.judge.label} | {c.regime} | {c.n} | {_fmt(c.identified_pct, 0)}% | {_fmt(c.raw_mean)} "
            f"({_fmt(100 * c.raw_coverage)}%) | "
            f"{_fmt(c.truth_pct)} | {_fmt(c.lc_mean)} ({_fmt(c.lc_bias, 2)}) | {_fmt(c.lc_sd)} | "
            f"{_fmt(100 * c.lc_coverage)}% | {_fmt(100 * c.lc_low_miss)}% / {_fmt(100 * c.lc_high_miss)}% | "
            f"{_fmt(100 * c.gap_coverage)}% | {_fmt(c.style_identified_pct, 0)}% | {_fmt(c.style_mean)} | "
            f"{_fmt(100 * c.style_coverage)}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lc_validity", description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=400, help="simulations per cell (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cells = [recovery(regime, n, judge, args.sims, args.seed)
             for judge in STUDY_JUDGES for regime in REGIMES for n in SIZES]
    print(f"### Recovery and coverage ({args.sims} simulations a cell; coverage floor "
          f"{100 * coverage_floor(0.95, args.sims):.1f}% = 95% minus 3 Monte-Carlo SE at {args.sims})\n")
    print(table(cells))
    misspecified = [recovery("straddling", n, judge, args.sims, args.seed) for judge in MISSPECIFIED_JUDGES for n in SIZES]
    print("\n### A judge whose length preference has another shape (log2 of the length ratio; the fit is misspecified)\n")
    print(table(misspecified))
    styled = [style_recovery(n, args.sims, args.seed) for n in SIZES]
    print("\n### Style control: a judge that also likes markdown lists (quality 60%, length 1 x tanh300, "
          "lists 1.5 x tanh(extra items / 2))\n")
    print(style_table(styled))
    print("\n### Without the 15% rule: LC as the policy is shorter on fewer prompts (n = 805, a judge of another "
          "shape: logit 6 x (p - r) / (p + r), quality 60%)\n")
    print("| prompts with the policy shorter | LC bias (pp) | LC 95% coverage |\n|---|---|---|")
    for row in minority_share_study(max(60, args.sims // 4), seed=args.seed):
        print(f"| {row['minority_pct']:.1f}% | {row['bias']:+.2f} | {100 * row['coverage']:.1f}% |")
    print(f"\n{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

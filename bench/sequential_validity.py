"""python -m bench.sequential_validity [--sims N]: what anytime-valid sequential evaluation buys, and
that it keeps its error rate, by simulating judged prompts of known truth through evals.sequential.

Prints the figures recorded in docs/sequential.md (the tests, tests/evals/test_sequential.py, run the
same checks at smaller sizes):
1. coverage: the probability that the 95% confidence sequence ever excludes the true mean, looking
   after every batch of 8 prompts up to 400 (win scores with and without ties, accuracy, paired
   differences);
2. false promotes of a `min: 50` win-rate rule (one-sided 95%) under no change and under equal quality,
   stopping at the first look that decides, against the fixed-n normal bound read at the same looks;
3. prompts and judge calls (2 per prompt: both orders) to decide against a fixed-size design at equal
   power, for effects of 10 and 20 win-rate points;
4. the choice of bet;
5. a domain task's allowed regression decided on paired differences (pass rates, documents used) against the
   fixed-size run's Tango bound, and the bet cap for paired differences.
"""
from __future__ import annotations

import argparse
import math
import time
from statistics import NormalDist

import numpy as np

import evals.sequential as seq
from evals.sequential import SequentialRule, ever_excludes, simulate_decisions

BATCH, MAX_PROMPTS, ALPHA = 8, 400, 0.05
Z = NormalDist().inv_cdf


def win_scores(rng, sims: int, n: int, win_rate: float, tie: float) -> np.ndarray:
    """Per-prompt win scores (1 win, 0.5 tie, 0 loss) with mean `win_rate` and a share `tie` of ties."""
    p_win = win_rate - tie / 2
    if not (0 <= p_win and p_win + tie <= 1):
        raise ValueError(f"win rate {win_rate} with {tie} ties is impossible")
    u = rng.random((sims, n))
    return np.where(u < p_win, 1.0, np.where(u < p_win + tie, 0.5, 0.0))


def score_variance(win_rate: float, tie: float) -> float:
    p_win = win_rate - tie / 2
    return p_win + tie / 4 - win_rate**2


def mc(p: float, sims: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / sims)


def coverage(sims: int, rng) -> list[dict]:
    looks = np.arange(BATCH, MAX_PROMPTS + 1, BATCH)
    cases = [("win rate 50, no ties", win_scores(rng, sims, MAX_PROMPTS, 0.5, 0.0), 0.5),
             ("win rate 50, 30% ties", win_scores(rng, sims, MAX_PROMPTS, 0.5, 0.3), 0.5),
             ("win rate 50, all ties (no change)", np.full((sims, MAX_PROMPTS), 0.5), 0.5),
             ("win rate 30, 30% ties", win_scores(rng, sims, MAX_PROMPTS, 0.3, 0.3), 0.3),
             ("win rate 70, 30% ties", win_scores(rng, sims, MAX_PROMPTS, 0.7, 0.3), 0.7),
             ("win rate 70, no ties", win_scores(rng, sims, MAX_PROMPTS, 0.7, 0.0), 0.7),
             ("accuracy 90%", (rng.random((sims, MAX_PROMPTS)) < 0.9).astype(float), 0.9)]
    # paired accuracy difference in [-1, 1], rescaled: 8% of items lost, 3% gained -> mean -0.05
    u = rng.random((sims, MAX_PROMPTS))
    diff = np.where(u < 0.08, -1.0, np.where(u < 0.11, 1.0, 0.0))
    cases.append(("paired difference -5 points (8% lost, 3% gained)", (diff + 1) / 2, (-0.05 + 1) / 2))
    rows = []
    for name, x, truth in cases:
        for horizon, label in ((MAX_PROMPTS // 2, "horizon 200 (the gate's)"), (None, "no horizon (WSR PrPl)")):
            miss = float(ever_excludes(x, truth, ALPHA, looks=looks, horizon=horizon).mean())
            rows.append({"case": name, "bets": label, "ever_excludes": miss, "mc": mc(miss, sims)})
    return rows


def fixed_n_normal_pass(x: np.ndarray, m0: float, looks: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """The fixed-n normal bound (mean - z SEM > m0) read at every look: what the gate computes for one n."""
    z = Z(confidence)
    csum, csq = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)
    n = looks.astype(float)
    mean = csum[:, looks - 1] / n
    var = (csq[:, looks - 1] - n * mean**2) / np.maximum(n - 1, 1)
    return mean - z * np.sqrt(np.maximum(var, 0) / n) > m0


def false_promotes(sims: int, rng) -> list[dict]:
    rule = SequentialRule("min", 0.5, 0.95)
    looks = np.arange(BATCH, MAX_PROMPTS + 1, BATCH)
    rows = []
    for name, x in (("no change (every verdict a tie)", np.full((sims, MAX_PROMPTS), 0.5)),
                    ("equal quality, no ties", win_scores(rng, sims, MAX_PROMPTS, 0.5, 0.0)),
                    ("equal quality, 30% ties", win_scores(rng, sims, MAX_PROMPTS, 0.5, 0.3)),
                    ("equal quality, 60% ties", win_scores(rng, sims, MAX_PROMPTS, 0.5, 0.6))):
        status, used = simulate_decisions(x, rule, batch=BATCH, max_n=MAX_PROMPTS)
        promote = float((status == 1).mean())
        peeking = float(fixed_n_normal_pass(x, 0.5, looks).any(axis=1).mean())
        once = float(fixed_n_normal_pass(x, 0.5, looks[-1:]).any(axis=1).mean())
        rows.append({"case": name, "sequential_promote": promote, "mc": mc(promote, sims),
                     "mean_prompts": float(used.mean()), "normal_bound_every_look": peeking,
                     "normal_bound_once_at_400": once})
    return rows


def fixed_n_for_power(power: float, win_rate: float, tie: float, confidence: float = 0.95) -> float:
    """Prompts a fixed-size design needs for `power` with a one-sided normal bound on the win rate:
    n = ((z_conf + z_power) sd / effect)^2."""
    sd = math.sqrt(score_variance(win_rate, tie))
    return ((Z(confidence) + Z(power)) * sd / (win_rate - 0.5)) ** 2


def sequential_design(rng, sims: int, win_rate: float, tie: float, max_prompts: int) -> dict:
    rule = SequentialRule("min", 0.5, 0.95)
    x = win_scores(rng, sims, max_prompts, win_rate, tie)
    status, used = simulate_decisions(x, rule, batch=BATCH, max_n=max_prompts)
    power = float((status == 1).mean())
    # all passed: the power is only known to be above 1 - 1/(2 sims); the matched fixed n is then a lower
    # bound of the true one and the ratio an upper bound
    capped = min(power, 1 - 1 / (2 * sims))
    fixed = fixed_n_for_power(capped, win_rate, tie)
    return {"win_rate": win_rate, "tie": tie, "max_prompts": max_prompts, "power": power, "mc": mc(power, sims),
            "power_capped": capped < power, "mean_prompts": float(used.mean()),
            "mean_judge_calls": 2 * float(used.mean()), "fixed_n": fixed, "ratio": float(used.mean()) / fixed,
            "stopped_before_budget": float((used < max_prompts).mean())}


def wald_sprt_prompts(power: float, win_rate: float, alpha: float = ALPHA) -> float:
    """Wald's approximate mean sample size of the SPRT of 50 against `win_rate` (no ties: Bernoulli)
    at error rates alpha and 1 - power: the fewest prompts ANY sequential test with these error rates
    needs on average (Wald-Wolfowitz), even one told the effect in advance."""
    beta = 1 - power
    kl = win_rate * math.log(win_rate / 0.5) + (1 - win_rate) * math.log((1 - win_rate) / 0.5)
    upper, lower = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha)) if beta > 0 else 0.0
    return ((1 - beta) * upper + beta * lower) / kl


def efficiency(sims: int, rng, budgets: tuple[int, ...] = (200, 400, 800)) -> list[dict]:
    rows = []
    for effect in (0.10, 0.20):
        for tie in (0.0, 0.3):
            for budget in budgets:
                rows.append(sequential_design(rng, sims, 0.5 + effect, tie, budget) | {"design": f"budget {budget}"})
            # the smallest budget (multiple of the batch) reaching 80% power: the usual planning target
            lo, hi = 1, max(budgets) // BATCH
            while lo < hi:
                mid = (lo + hi) // 2
                if sequential_design(rng, sims, 0.5 + effect, tie, mid * BATCH)["power"] >= 0.8:
                    hi = mid
                else:
                    lo = mid + 1
            row = sequential_design(rng, sims, 0.5 + effect, tie, lo * BATCH)
            rows.append(row | {"design": f"80% power, budget {lo * BATCH}"})
    for row in rows:
        if row["tie"] == 0:
            row["sprt_prompts"] = wald_sprt_prompts(min(row["power"], 1 - 1 / (2 * sims)), row["win_rate"])
    return rows


def bet_choice(sims: int, rng) -> list[dict]:
    """The candidates for the bet, budget 400, no ties: WSR's PrPl alone, floored at the whole budget, and
    PrPl floored at half the budget (the default)."""
    rows = []
    rule = SequentialRule("min", 0.5, 0.95)
    for effect in (0.10, 0.20):
        x = win_scores(rng, sims, MAX_PROMPTS, 0.5 + effect, 0.0)
        for horizon, label in ((0, "PrPl alone"), (MAX_PROMPTS, "PrPl floored at the budget"),
                               (None, "PrPl floored at budget/2 (default)")):
            status, used = simulate_decisions(x, rule, batch=BATCH, max_n=MAX_PROMPTS, horizon=horizon)
            rows.append({"effect": effect, "bets": label, "power": float((status == 1).mean()),
                         "mean_prompts": float(used.mean())})
    return rows


def paired_scores(rng, sims: int, n: int, lost: float, gained: float) -> np.ndarray:
    """Per-document paired differences policy - reference in {-1, 0, 1}: a share `lost` of documents the
    policy gets wrong where the reference was right, `gained` the other way."""
    u = rng.random((sims, n))
    return np.where(u < lost, -1.0, np.where(u < lost + gained, 1.0, 0.0))


def domain_decisions(sims: int, rng, batch: int = 16, margin: float = 0.10) -> list[dict]:
    """A domain task's `max_regression: 0.10` decided sequentially on paired differences (looks every 16
    documents), with the paired bet cap and with the win rate's, against the fixed-size run's Tango bound
    on every document (what the gate reads without eval.sequential)."""
    from functools import lru_cache

    from evals.paired_accuracy import paired_drop_upper_bound

    tango = lru_cache(maxsize=None)(lambda lost, gained, n: paired_drop_upper_bound(lost, gained, n, 0.95))
    rule = SequentialRule("max_regression", margin, 0.95)
    rows = []
    for n in (123, 400):
        for lost, gained, label in ((0.0, 0.0, "no change"), (0.05, 0.05, "5% lost, 5% gained (no true change)"),
                                    (0.10, 0.0, "drop at the margin (10% lost)"),
                                    (0.15, 0.05, "drop at the margin (15% lost, 5% gained)"),
                                    (0.25, 0.0, "drop of 25 points")):
            d = paired_scores(rng, sims, n, lost, gained)
            row = {"n": n, "case": label}
            for cap, name in ((seq.PAIRED_BET_CAP, "paired cap"), (seq.BET_CAP, "cap 1/2")):
                saved, seq.PAIRED_BET_CAP = seq.PAIRED_BET_CAP, cap
                try:
                    status, used = simulate_decisions(d, rule, batch=batch, max_n=n)
                finally:
                    seq.PAIRED_BET_CAP = saved
                row[name] = (float((status == 1).mean()), float(used.mean()))
            counts = zip((d == -1).sum(axis=1).tolist(), (d == 1).sum(axis=1).tolist())
            row["fixed Tango"] = float(np.mean([tango(a, b, n) < margin for a, b in counts]))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sequential_validity")
    parser.add_argument("--sims", type=int, default=10000, help="simulated evals per scenario (MC error ~ 0.2 points)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    print(f"## 1. P(the 95% confidence sequence ever excludes the truth), looks every {BATCH} prompts up to "
          f"{MAX_PROMPTS}, {args.sims} sims each")
    for r in coverage(args.sims, rng):
        print(f"{r['case']:52s} {r['bets']:26s} {100 * r['ever_excludes']:5.2f}% +- {100 * r['mc']:.2f}")
    print(f"\n## 2. false promotes of `min: 50` (one-sided 95%), stopping at the first deciding look "
          f"(every {BATCH} prompts, budget {MAX_PROMPTS})")
    for r in false_promotes(args.sims, rng):
        print(f"{r['case']:34s} sequential {100 * r['sequential_promote']:5.2f}% +- {100 * r['mc']:.2f} "
              f"(mean {r['mean_prompts']:.0f} prompts); fixed-n normal bound read at every look "
              f"{100 * r['normal_bound_every_look']:5.2f}%, read once at {MAX_PROMPTS} "
              f"{100 * r['normal_bound_once_at_400']:5.2f}%")
    print("\n## 3. prompts to decide `min: 50` vs a fixed-size design at equal power "
          "(judge calls = 2 x prompts: both orders)")
    for r in efficiency(args.sims, rng):
        capped = ">=" if r["power_capped"] else ""
        print(f"effect {100 * (r['win_rate'] - 0.5):.0f} pts, {100 * r['tie']:.0f}% ties, {r['design']}: "
              f"power {capped}{100 * r['power']:.1f}% +- {100 * r['mc']:.1f}, "
              f"mean {r['mean_prompts']:.1f} prompts ({r['mean_judge_calls']:.0f} judge calls), "
              f"{100 * r['stopped_before_budget']:.0f}% stopped early; fixed n at that power "
              f"{r['fixed_n']:.0f} -> ratio {'<=' if capped else ''}{r['ratio']:.2f}"
              + (f" (Wald's SPRT told the effect: {r['sprt_prompts']:.0f} prompts, ratio "
                 f"{r['sprt_prompts'] / r['fixed_n']:.2f})" if "sprt_prompts" in r else ""))
    print("\n## 4. the bet (budget 400, no ties; the same simulated evals for each bet)")
    for r in bet_choice(args.sims, rng):
        print(f"effect {100 * r['effect']:.0f} pts, {r['bets']:36s} power {100 * r['power']:5.1f}%, "
              f"mean {r['mean_prompts']:.1f} prompts")
    print("\n## 5. a domain task's allowed regression of 10 points on paired differences (looks every 16 "
          "documents): P(pass), mean documents used")
    for r in domain_decisions(args.sims, rng):
        print(f"{r['n']} documents, {r['case']:42s} sequential (paired cap) {100 * r['paired cap'][0]:5.1f}%, "
              f"{r['paired cap'][1]:5.1f} docs; with the win rate's cap 1/2 {100 * r['cap 1/2'][0]:5.1f}%, "
              f"{r['cap 1/2'][1]:5.1f} docs; fixed-size Tango on all {100 * r['fixed Tango']:5.1f}%")
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

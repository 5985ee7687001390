"""python -m bench.gate_validity [--sims N]: the gate's error rates at large simulation counts.

The tests (tests/harness/test_gate_validity.py) run the same checks at sizes that fit CI; this prints
the figures recorded in docs/gate_validity.md:
1. for every shipped config: `harness gate plan` (no change, equal quality, power, family-wise);
2. coverage of the paired accuracy drop's upper bound (Tango score, what non-inferiority reads);
3. coverage of the KL mean's bounds (skew-aware, what a KL ceiling reads; the normal bound beside it)
   for right-skewed per-sequence KL, at 95% and at a four-cell sweep's 98.75%;
4. coverage of the length ratio's delta-method bounds (what a length-ratio ceiling reads);
5. coverage of the win-rate bounds (raw, LC, style-controlled) when their truth is known.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def plans(sims: int) -> None:
    from harness.gate_plan import plan_gate, stated_level
    from harness.plan_command import load_plan_target

    print("## gate plan per shipped config (P(promote); correct verdict in brackets)")
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        config = load_plan_target(str(path), [])
        t0 = time.time()
        plan = plan_gate(config, config_path=path.name, sims=sims, search_sims=max(sims // 2, 50))
        level = stated_level(config)
        cells = ", ".join(f"{s.scenario} {100 * s.promote_rate:.1f}%+-{100 * s.mc_stderr:.1f} [{s.expected}]"
                          for s in plan.scenarios)
        fw = (f"; all-equal sweep of {plan.family_size} ships any: {100 * plan.family_wise_rate:.1f}%"
              f"+-{100 * plan.family_wise_mc_stderr:.1f}" if plan.family_wise_rate is not None else "")
        power = ", ".join(f"{k}: {v}" for k, v in plan.sizes_for_power.items())
        print(f"{path.name}: level {100 * level:.3g}% (per cell {100 * level / plan.family_size:.3g}%), n_prompts "
              f"{plan.sizes['n_prompts']}, items {plan.sizes['domain_items']}: {cells}{fw}; 80% power at: {power} "
              f"({time.time() - t0:.0f} s)")


def paired_coverage(sims: int) -> None:
    from evals.paired_accuracy import paired_drop_upper_bound

    print("## one-sided 95% upper bound of the paired accuracy drop (Tango score, half-item correction)")
    rng = np.random.default_rng(0)
    worst = 1.0
    for n in (30, 42, 60, 120, 200):
        row = []
        for drop, disc in ((0.0, 0.0), (0.0, 0.1), (0.05, 0.05), (0.1, 0.1), (0.1, 0.2), (0.05, 0.3)):
            counts = rng.multinomial(n, [(disc + drop) / 2, (disc - drop) / 2, 1 - disc], size=sims)
            cov = np.mean([paired_drop_upper_bound(b, c, n, 0.95) >= drop - 1e-9 for b, c, _ in counts])
            worst = min(worst, cov)
            row.append(f"drop {drop:g}/disc {disc:g}: {100 * cov:.1f}%")
        print(f"n={n}: " + "; ".join(row))
    print(f"worst coverage {100 * worst:.1f}% (MC se {100 * math.sqrt(0.05 * 0.95 / sims):.1f})")


def _kl_mixture(p_big: float, factor: float):
    """A share `p_big` of responses drift far: gamma(2) KL at `factor` times the typical mean (1)."""
    def draw(rng, shape):
        big = rng.random(shape) < p_big
        return np.where(big, rng.gamma(2.0, 0.5 * factor, shape), rng.gamma(2.0, 0.5, shape))
    return draw, 1.0 - p_big + p_big * factor


# name: (draw(rng, shape), true mean, skewness)
KL_SHAPES = {
    "gamma, shape 0.5": (lambda rng, shape: rng.gamma(0.5, 2.0, shape), 1.0, 2.83),
    "gamma, shape 1": (lambda rng, shape: rng.gamma(1.0, 1.0, shape), 1.0, 2.0),
    "gamma, shape 2": (lambda rng, shape: rng.gamma(2.0, 0.5, shape), 1.0, 1.41),
    "lognormal, sigma 0.5": (lambda rng, shape: rng.lognormal(0.0, 0.5, shape), math.exp(0.125), 1.75),
    "lognormal, sigma 1": (lambda rng, shape: rng.lognormal(0.0, 1.0, shape), math.exp(0.5), 6.18),
    "mixture, 10% at 5x": (*_kl_mixture(0.10, 5.0), 4.35),
    "mixture, 5% at 10x (stress)": (*_kl_mixture(0.05, 10.0), 6.76),
}


def kl_coverage(sims: int) -> None:
    """Each simulated eval goes through KLEstimate.summary and harness.gate.confidence_limit; the normal
    bound is the same summary without its skewness (what the gate read before)."""
    from evals.kl import KLEstimate
    from harness.gate import confidence_limit

    key, sizes, levels = "kl/seq_kl_k3", (6, 8, 12, 16, 32, 64), (0.95, 0.9875)
    print(f"## upper bound of the mean sequence KL: coverage skew-aware (normal), n = {', '.join(map(str, sizes))}")
    rng = np.random.default_rng(1)
    for name, (draw, truth, skewness) in KL_SHAPES.items():
        cells: dict[float, list[str]] = {level: [] for level in levels}
        for n in sizes:
            summaries = [KLEstimate(r.tolist(), r.tolist(), n).summary() for r in draw(rng, (sims, n))]
            normal = [{k: v for k, v in s.items() if k != f"{key}_skewness"} for s in summaries]
            for level in levels:
                skew_aware = np.mean([confidence_limit(key, "high", level, s) >= truth for s in summaries])
                plain = np.mean([confidence_limit(key, "high", level, s) >= truth for s in normal])
                cells[level].append(f"{100 * skew_aware:.1f} ({100 * plain:.1f})")
        for level in levels:
            print(f"{name} (skewness {skewness:g}), {100 * level:g}%: " + "; ".join(cells[level]))
    print("## lower bound, 95%: right-skewed gamma shape 1 / left-skewed (5 - gamma shape 0.5)")
    for n in sizes:
        right = [KLEstimate(r.tolist(), r.tolist(), n).summary() for r in rng.gamma(1.0, 1.0, (sims, n))]
        left = [KLEstimate(r.tolist(), r.tolist(), n).summary() for r in 5.0 - rng.gamma(0.5, 2.0, (sims, n))]
        cov_r = np.mean([confidence_limit(key, "low", 0.95, s) <= 1.0 for s in right])
        cov_l = np.mean([confidence_limit(key, "low", 0.95, s) <= 4.0 for s in left])
        print(f"n={n}: {100 * cov_r:.1f}% / {100 * cov_l:.1f}%")
    print(f"(MC se {100 * math.sqrt(0.05 * 0.95 / sims):.2f} at 95%, {100 * math.sqrt(0.0125 * 0.9875 / sims):.2f} "
          "at 98.75%)")


def _length_scenarios():
    """name: draw(rng, shape) -> (policy tokens, reference tokens). Lengths are lognormal around 60 tokens."""
    def independent(ratio, sigma, cap=None):
        def draw(rng, shape):
            ref = np.exp(rng.normal(math.log(60), sigma, shape))
            pol = np.exp(rng.normal(math.log(60 * ratio), sigma, shape))
            return (np.minimum(pol, cap), np.minimum(ref, cap)) if cap else (pol, ref)
        return draw

    def paired(ratio, sigma, noise):
        def draw(rng, shape):
            ref = np.exp(rng.normal(math.log(60), sigma, shape))
            return ref * np.exp(rng.normal(math.log(ratio) - noise ** 2 / 2, noise, shape)), ref
        return draw

    return {"independent, sigma 0.5, ratio 1.3": independent(1.3, 0.5),
            "independent, sigma 0.8, ratio 1.5": independent(1.5, 0.8),
            "paired (x lognormal 0.3), sigma 0.6, ratio 1.3": paired(1.3, 0.6, 0.3),
            "capped at 128 tokens, sigma 0.8, ratio 1.3": independent(1.3, 0.8, cap=128)}


def length_coverage(sims: int) -> None:
    from evals.length import length_summary
    from harness.gate import confidence_limit

    key, sizes = "length/ratio_tokens", (12, 16, 24, 32)
    print("## length ratio (delta method; old: normal bound, new: skew-aware as the gate reads it): coverage "
          f"upper / lower bound, n = {', '.join(map(str, sizes))}")
    rng = np.random.default_rng(3)
    for name, draw in _length_scenarios().items():
        pol, ref = draw(rng, (200, 5000))
        truth = pol.mean() / ref.mean()  # the ratio of the population means, what the estimate targets
        for level in (0.95, 0.9875):
            cells = []
            for n in sizes:
                pols, refs = draw(rng, (sims, n))
                hi = lo = old_hi = 0
                for p, q in zip(pols.round(), refs.round()):
                    summary = length_summary(p.tolist(), q.tolist(), p.tolist(), q.tolist())
                    hi += (confidence_limit(key, "high", level, summary) or math.inf) >= truth
                    lo += (confidence_limit(key, "low", level, summary) or -math.inf) <= truth
                    normal = {key: summary[key], f"{key}_stderr": summary[f"{key}_stderr"]}
                    old_hi += confidence_limit(key, "high", level, normal) >= truth
                cells.append(f"{100 * hi / sims:.1f} / {100 * lo / sims:.1f} (old upper {100 * old_hi / sims:.1f})")
            print(f"{name} (truth {truth:.3f}), {100 * level:g}%: " + "; ".join(cells))


def winrate_coverage(sims: int) -> None:
    from harness.gate import confidence_limit
    from harness.gate_plan import _winrate_summary

    print("## one-sided 95% lower bound of the win rates, judge without length preference (truth known)")
    rng = np.random.default_rng(2)
    for n in (24, 100, 805):
        for true_win in (50.0, 60.0):
            hits = {"win_rate_pct": 0, "lc_win_rate_pct": 0, "style_controlled_pct": 0}
            seen = dict.fromkeys(hits, 0)
            for _ in range(sims):
                ref = np.exp(rng.normal(5.5, 0.5, n)).round()
                pol = np.exp(rng.normal(5.5, 0.5, n)).round()
                p_win = true_win / 100 - 0.125  # ties 25% count half: the win rate is true_win
                u = rng.random(n)
                verdicts = np.where(u < p_win, 2.0, np.where(u < 0.25 + p_win, 1.5, 1.0))
                summary = _winrate_summary(verdicts, ref, pol)
                for key in hits:
                    low = confidence_limit(f"winrate/{key}", "low", 0.95, summary)
                    if low is not None:
                        seen[key] += 1
                        hits[key] += low <= true_win
            cells = "; ".join(f"{k}: {100 * hits[k] / seen[k]:.1f}% of {seen[k]}" for k in hits if seen[k])
            print(f"n={n}, true win rate {true_win:g}%: {cells}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gate_validity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--only", choices=["plans", "paired", "kl", "length", "winrate"], action="append")
    a = ap.parse_args(argv)
    parts = {"plans": plans, "paired": paired_coverage, "kl": kl_coverage, "length": length_coverage,
             "winrate": winrate_coverage}
    for name in a.only or parts:
        t0 = time.time()
        parts[name](a.sims if name != "plans" else max(a.sims // 4, 100))
        print(f"# {name}: {time.time() - t0:.0f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

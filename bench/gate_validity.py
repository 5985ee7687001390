"""python -m bench.gate_validity [--sims N]: the gate's error rates at large simulation counts.

The tests (tests/harness/test_gate_validity.py) run the same checks at sizes that fit CI; this prints
the figures recorded in docs/gate_validity.md:
1. for every shipped config: `harness gate plan` (no change, equal quality, power, family-wise);
2. coverage of the paired accuracy drop's upper bound (Tango score, what non-inferiority reads);
3. coverage of the KL mean's upper bound (normal, what a KL ceiling reads) for skewed samples;
4. coverage of the win-rate bounds (raw, LC, style-controlled) when their truth is known.
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


def kl_coverage(sims: int) -> None:
    from evals.kl import KLEstimate
    from harness.gate import confidence_limit

    print("## one-sided 95% upper bound of the mean sequence KL (normal), gamma-distributed samples")
    rng = np.random.default_rng(1)
    for shape in (1.0, 2.0, 5.0):
        row = []
        for n in (8, 12, 16, 32, 64):
            draws = rng.gamma(shape, 3.0 / shape, size=(sims, n))
            cov = np.mean([confidence_limit("kl/seq_kl_k3", "high", 0.95,
                                            KLEstimate(r.tolist(), r.tolist(), n).summary()) >= 3.0 for r in draws])
            row.append(f"n={n}: {100 * cov:.1f}%")
        print(f"gamma shape {shape:g} (skewness {2 / math.sqrt(shape):.2f}): " + "; ".join(row))


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
    ap.add_argument("--only", choices=["plans", "paired", "kl", "winrate"], action="append")
    a = ap.parse_args(argv)
    parts = {"plans": plans, "paired": paired_coverage, "kl": kl_coverage, "winrate": winrate_coverage}
    for name in a.only or parts:
        t0 = time.time()
        parts[name](a.sims if name != "plans" else max(a.sims // 4, 100))
        print(f"# {name}: {time.time() - t0:.0f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Win rate of the policy against the reference on the same prompts, raw and length-controlled.

The judge gives alpaca-eval style preferences; alpaca-eval's GLM (through evals.lc_winrate)
turns them into the LC win rate. Output_1 is always the reference, output_2 the policy.
"""
from __future__ import annotations

import pandas as pd

from evals.judges import JudgeItem, build_judge, position_swap
from evals.lc_winrate import lc_winrate
from evals.metrics import register_metric

register_metric("winrate/raw_minus_lc_pct", higher_is_better=False, unit="pct",
                description="raw win rate minus LC win rate: a large gap means verbosity bought the win")
register_metric("winrate/position_flip_rate", higher_is_better=False, unit="fraction",
                description="share of verdicts that change when the two answers swap places")
register_metric("winrate/first_position_rate", higher_is_better=None, unit="fraction",
                description="share of decisive raw verdicts (both orders) that picked the answer shown first; 0.5 = no position bias")
register_metric("winrate/verbosity_alarm", higher_is_better=False, unit="flag",
                description="1.0 when raw minus LC win rate exceeds eval.verbosity_gap_pct (verbosity bought the win), else 0.0")


def annotations_frame(prompts: list[str], reference: list[str], policy: list[str], verdicts: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"instruction": prompts, "output_1": reference, "output_2": policy, "preference": verdicts,
                         "generator_1": "reference", "generator_2": "policy", "annotator": "harness"})


def winrate_eval(items: list[JudgeItem], judge="rule", *, n_bootstrap: int, seed: int, cache_dir=None,
                 verbosity_gap_pct: float = 10.0) -> tuple[dict[str, float], list[float]]:
    """`judge`: a judge name, an `eval.judge` config or a judge object (see evals.judges.build_judge).
    A judge that fails raises (JudgeError): the eval fails, and the gate with it."""
    swap = position_swap(build_judge(judge, cache_dir=cache_dir), items)
    verdicts, flip_rate = swap.verdicts, swap.flip_rate
    frame = annotations_frame([i.prompt for i in items], [i.output_1 for i in items], [i.output_2 for i in items], verdicts)
    lengths = frame["output_1"].str.len() - frame["output_2"].str.len()
    if lengths.std() == 0 or len(set(verdicts)) == 1:
        # No length difference (or one verdict everywhere): nothing for the GLM to control for,
        # and its standardization would divide by zero. LC equals raw by definition here.
        frame = frame.assign(generator_2="reference")
    result = lc_winrate(frame, n_bootstrap=n_bootstrap, seed=seed)
    summary = result.to_summary(prefix="winrate")
    if frame["generator_2"].iloc[0] == "reference":
        raw = summary["winrate/win_rate_pct"]
        for suffix in ("", "_stderr", "_ci_low", "_ci_high"):
            summary[f"winrate/lc_win_rate_pct{suffix}"] = summary.get(f"winrate/win_rate_pct{suffix}", raw)
    summary["winrate/raw_minus_lc_pct"] = summary["winrate/win_rate_pct"] - summary["winrate/lc_win_rate_pct"]
    summary["winrate/position_flip_rate"] = flip_rate
    summary["winrate/first_position_rate"] = swap.first_position_rate
    gap = summary["winrate/raw_minus_lc_pct"]
    summary["winrate/verbosity_alarm"] = float("nan") if gap != gap else float(gap > verbosity_gap_pct)
    return summary, verdicts

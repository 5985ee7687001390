"""`harness gate plan`: the gate's error rates before any training.

For the configured rules and eval sizes, simulate cells whose truth is known (no change, equal
quality, better by a named effect, regressed by a named effect), measure each one through the same
statistics the runs use (`evals.pairwise.winrate_statistics`, `evals.paired_accuracy.paired_summary`) and
decide it with the same `gate()`. What comes out is what a reader needs before trusting a verdict:
how often a cell that is not better would ship (the false-promote rate, to compare with the stated
level), how often a real improvement ships (power), how often a real regression is blocked, and the
eval size that would reach 80% power.

Simulated: rules on `winrate/*` and on domain accuracy (`domain_*/acc`). Every other rule (KL, length,
chosen log-prob, judge calibration, ...) is left out of the simulated decision and listed as such:
the gate ANDs its checks, so leaving a rule out can only raise the simulated promote rate - the
false-promote figures stay upper bounds and the power figures are optimistic.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evals.catalog import known_metrics
from evals.domain import eval_name
from evals.paired_accuracy import paired_summary
from harness.config import ExperimentConfig, GateRule
from harness.gate import PROMOTE, effective_rules, gate, rule_confidence

# Assumptions about cells the simulation cannot know; each is printed with the plan.
TIE_SHARE = 0.25  # share of prompts the judge calls a tie between two different answers
DISCORDANT_SHARE = 0.15  # share of domain items whose correctness differs between two different models
REFERENCE_ACCURACY = 0.5
MEAN_LOG_CHARS, SD_LOG_CHARS = math.log(250.0), 0.5  # answer lengths, the same distribution on both sides
POWER_TARGET = 0.8
PLAN_VERSION = 1  # bump when the simulation or the statistics it calls change: cached plans are keyed by it
SIZE_GRID = (12, 24, 48, 96, 192, 400, 805, 1600)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected: str  # what a correct gate does: PROMOTE or BLOCK
    changed: bool = True  # False: the policy's outputs are the reference's
    win_shift_pct: float = 0.0  # policy's true win rate minus 50, in points
    acc_shift: float = 0.0  # policy's true domain accuracy minus the reference's


def scenarios(effects_pct: list[float], regressions: list[float]) -> list[Scenario]:
    out = [Scenario("no_change", "outputs identical to the reference's (learning_rate 0)", "BLOCK", changed=False),
           Scenario("equal_quality", "different outputs, same quality: wins = losses, same accuracy", "BLOCK")]
    out += [Scenario(f"better_{e:g}pt", f"true win rate {50 + e:g}%, accuracy unchanged", PROMOTE, win_shift_pct=e)
            for e in effects_pct]
    out += [Scenario(f"regressed_{100 * d:g}pt", f"true win rate 75%, but domain accuracy {100 * d:g} points lower",
                     "BLOCK", win_shift_pct=25.0, acc_shift=-d) for d in regressions]
    return out


@dataclass
class Sizes:
    n_prompts: int
    domain_items: dict[str, int]  # domain eval name -> items


def eval_sizes(config: ExperimentConfig) -> Sizes:
    from evals.domain import BUILTIN_TASKS, resolve_task
    from evals.domain_data import task_items

    builtin = task_items(config.seed)
    items = {}
    for task in config.eval.domain_tasks:
        resolved = resolve_task(task)
        available = len(builtin[BUILTIN_TASKS[resolved]]) if resolved in BUILTIN_TASKS else None
        limit = config.eval.domain_limit
        items[eval_name(resolved)] = min(x for x in (available, limit) if x is not None) if (available or limit) else 0
    return Sizes(config.eval.n_prompts, items)


def simulated_rules(rules: list[GateRule]) -> tuple[list[GateRule], list[GateRule]]:
    def simulated(rule: GateRule) -> bool:
        evaluation = rule.metric.split("/", 1)[0]
        return evaluation == "winrate" or (evaluation.startswith("domain_") and rule.metric.endswith("/acc"))

    return [r for r in rules if simulated(r)], [r for r in rules if not simulated(r)]


def _winrate_summary(verdicts, reference_chars, policy_chars) -> dict[str, float]:
    from evals.winrate_stats import winrate_statistics

    return dict(winrate_statistics(list(verdicts), list(reference_chars), list(policy_chars)).summary)


def simulate_cell(scenario: Scenario, sizes: Sizes, rng: np.random.Generator) -> tuple[dict, dict]:
    """One cell's summary and reference baseline under `scenario`, measured the way a run measures."""
    n = sizes.n_prompts
    if scenario.changed:
        ref_chars = np.exp(rng.normal(MEAN_LOG_CHARS, SD_LOG_CHARS, n)).round()
        pol_chars = np.exp(rng.normal(MEAN_LOG_CHARS, SD_LOG_CHARS, n)).round()
        p_win = (1 - TIE_SHARE) / 2 + scenario.win_shift_pct / 100
        p_win = min(max(p_win, 0.0), 1 - TIE_SHARE)
        u = rng.random(n)
        verdicts = np.where(u < p_win, 2.0, np.where(u < p_win + TIE_SHARE, 1.5, 1.0))
    else:  # the same answer on both sides: the judge ties everything
        ref_chars = np.exp(rng.normal(MEAN_LOG_CHARS, SD_LOG_CHARS, n)).round()
        pol_chars, verdicts = ref_chars.copy(), np.full(n, 1.5)
    summary = _winrate_summary(verdicts, ref_chars, pol_chars)
    reference: dict[str, float] = {"winrate/win_rate_pct": 50.0, "winrate/lc_win_rate_pct": 50.0,
                                   "winrate/style_controlled_pct": 50.0, "winrate/raw_minus_lc_pct": 0.0}
    for task_eval, n_items in sizes.domain_items.items():
        ref = (rng.random(n_items) < REFERENCE_ACCURACY).astype(float)
        pol = ref.copy()
        if scenario.changed:
            # a discordant share of items: the policy gains each with probability q, loses it otherwise,
            # so the accuracy shift is DISCORDANT_SHARE * (2q - 1)
            discordant = rng.random(n_items) < DISCORDANT_SHARE
            q = float(np.clip(0.5 + scenario.acc_shift / (2 * DISCORDANT_SHARE), 0.0, 1.0))
            gains = rng.random(n_items) < q
            ref = np.where(discordant, np.where(gains, 0.0, 1.0), ref)
            pol = np.where(discordant, np.where(gains, 1.0, 0.0), ref)
        p = pol.mean()
        summary[f"{task_eval}/acc"] = float(p)
        summary[f"{task_eval}/acc_stderr"] = float(math.sqrt(p * (1 - p) / max(n_items - 1, 1)))
        summary |= paired_summary(task_eval, pol.tolist(), {"": ref.tolist()})
        reference[f"{task_eval}/acc"] = float(ref.mean())
    return summary, reference


@dataclass
class ScenarioRates:
    scenario: str
    description: str
    expected: str
    promote_rate: float
    mc_stderr: float
    rule_pass_rates: dict[str, float]


@dataclass
class Plan:
    config: str
    sims: int
    family_size: int
    sizes: dict[str, Any]
    rules: list[dict]
    not_simulated: list[str]
    scenarios: list[ScenarioRates]
    sizes_for_power: dict[str, int | None]
    assumptions: dict[str, float]
    family_wise_rate: float | None = None
    family_wise_mc_stderr: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rates(rules, scenario, sizes, sims, family_size, rng) -> ScenarioRates:
    specs = known_metrics()
    promoted, passes = 0, {r.label: 0 for r in rules}
    for _ in range(sims):
        summary, reference = simulate_cell(scenario, sizes, rng)
        decision = gate(summary, {"reference": reference, "start": reference, "champion": None}, rules, specs=specs,
                        family_size=family_size)
        promoted += decision.verdict == PROMOTE
        for check in decision.checks:
            if check.name in passes:
                passes[check.name] += check.passed
    rate = promoted / sims
    return ScenarioRates(scenario.name, scenario.description, scenario.expected, rate,
                         math.sqrt(max(rate * (1 - rate), 1.0 / sims) / sims), {k: v / sims for k, v in passes.items()})


LARGE = 1600  # the other dimension while one is searched: large enough not to bind


def _size_for_power(rules, scenario, sizes, sims, family_size, rng) -> int | None:
    """Smallest size on SIZE_GRID at which `scenario` promotes at least POWER_TARGET of the time: eval
    prompts for an improvement (domain items held large), domain items for an equal-accuracy cell to
    be shown non-inferior (prompts held large). A regression needs no size: small sets cannot show
    non-inferiority, so they block it anyway - the block rates at the configured size say enough."""
    for size in SIZE_GRID:
        if scenario.name == "non_inferior":
            trial = Sizes(LARGE, {k: size for k in sizes.domain_items})
        else:
            trial = Sizes(size, {k: LARGE for k in sizes.domain_items})
        if _rates(rules, scenario, trial, sims, family_size, rng).promote_rate >= POWER_TARGET:
            return size
    return None


def plan_gate(config: ExperimentConfig, *, config_path: str = "", sims: int = 400, effects_pct=(10.0, 20.0),
              regressions=(0.10, 0.20), family_size: int | None = None, seed: int = 0,
              search_sims: int = 200) -> Plan:
    family = family_size or config.gate.family_size
    rules = effective_rules(config.gate, config.eval.domain_tasks)
    simulated, left_out = simulated_rules(rules)
    sizes = eval_sizes(config)
    rng = np.random.default_rng(seed)
    reads_domain = any(r.metric.startswith("domain_") for r in simulated)
    cases = scenarios(list(effects_pct), list(regressions) if sizes.domain_items and reads_domain else [])
    rates = [_rates(simulated, s, sizes, sims, family, rng) for s in cases]
    searched = [s for s in cases if s.name.startswith("better_")]
    if reads_domain:  # a clearly better cell with the same accuracy: how many items show non-inferiority?
        searched.append(Scenario("non_inferior", "true win rate 75%, accuracy unchanged", PROMOTE, win_shift_pct=25.0))
    power_sizes = {s.name: _size_for_power(simulated, s, sizes, search_sims, family, rng)
                   for s in searched} if search_sims else {}
    notes = []
    if not simulated:
        notes.append("no rule reads winrate/* or domain accuracy: nothing here can show an improvement")
    plan = Plan(config=config_path, sims=sims, family_size=family,
                sizes={"n_prompts": sizes.n_prompts, "domain_items": sizes.domain_items},
                rules=[{"name": r.label, "metric": r.metric, "statistic": r.statistic,
                        "confidence": None if r.statistic == "point" else rule_confidence(r, family),
                        "simulated": r in simulated} for r in rules],
                not_simulated=[r.label for r in left_out], scenarios=rates, sizes_for_power=power_sizes,
                assumptions={"tie_share": TIE_SHARE, "discordant_share": DISCORDANT_SHARE,
                             "reference_accuracy": REFERENCE_ACCURACY}, notes=notes)
    if family > 1:  # an all-equal sweep: does ANY of its cells ship?
        equal = next(s for s in cases if s.name == "equal_quality")
        any_ship = 0
        for _ in range(sims):
            any_ship += any(_rates(simulated, equal, sizes, 1, family, rng).promote_rate for _ in range(family))
        plan.family_wise_rate = any_ship / sims
        plan.family_wise_mc_stderr = math.sqrt(max(plan.family_wise_rate * (1 - plan.family_wise_rate), 1 / sims) / sims)
    return plan


def stated_level(config: ExperimentConfig) -> float:
    """The false-promote level the configured rules state: the loosest one-sided alpha among the
    simulated rules (any one of them failing blocks, so the cell's rate is at most the smallest
    superiority alpha; we report the largest, the conservative reading)."""
    rules, _ = simulated_rules(effective_rules(config.gate, config.eval.domain_tasks))
    bound_rules = [r for r in rules if r.statistic != "point"]
    return max((1 - r.confidence for r in bound_rules), default=1.0)


def cached_plan(config: ExperimentConfig, cache_dir, *, sims: int = 200) -> dict:
    """The plan for a run's report: the fixed-size scenarios only (no size search), cached by what
    decides it (rules, sizes, family, simulation settings), so a sweep's cells share one."""
    import hashlib
    import json

    from harness.atomic_io import read_json, write_json_atomic

    sizes = eval_sizes(config)
    key = hashlib.sha256(json.dumps([config.gate.model_dump(mode="json"), asdict(sizes), config.eval.domain_tasks,
                                     sims, TIE_SHARE, DISCORDANT_SHARE, PLAN_VERSION], sort_keys=True).encode()
                         ).hexdigest()[:20]
    path = cache_dir / "gate_plans" / f"{key}.json"
    found = read_json(path)
    if found is None:
        found = plan_gate(config, sims=sims, search_sims=0).to_json()
        write_json_atomic(path, found)
    return found

"""`harness gate plan`: the gate's error rates before any training.

For the configured rules and eval sizes, simulate cells whose truth is known (no change, equal
quality, better by a named effect, regressed by a named effect), measure each one through the same
statistics the runs use (`evals.winrate_stats.winrate_statistics`, `evals.paired_accuracy.paired_summary`)
and decide it with the same `gate()`, at the number of prompts a run judges (`prompt_count`; a run's report:
the number it judged). What comes out is what a reader needs before trusting a verdict:
how often a cell that is not better would ship (the false-promote rate, to compare with the stated
level), how often a real improvement ships (power), how often a real regression is blocked, the
eval size that would reach 80% power, and for a sweep of K cells how often an all-equal sweep ships any
cell (K x sims equal-quality cells decided once, grouped into sims sweeps).

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
PLAN_VERSION = 2  # bump when the simulation or the statistics it calls change: cached plans are keyed by it
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
    prompts_source: str = ""  # how n_prompts was found, in words (printed with the plan)
    prompts_exact: bool = True  # False: assumed, the prompt set cannot be sized before a run


def eval_sizes(config: ExperimentConfig, *, evaluated_prompts: int | None = None) -> Sizes:
    """The sizes to simulate at. `evaluated_prompts`: what a run actually judged (its `winrate/n`, or its
    prompt set's length); without it, the size `eval.prompts` resolves to (`prompt_count`)."""
    from evals.domain import BUILTIN_TASKS, resolve_task
    from evals.domain_data import task_items

    builtin = task_items(config.seed)
    items = {}
    for task in config.eval.domain_tasks:
        resolved = resolve_task(task)
        available = len(builtin[BUILTIN_TASKS[resolved]]) if resolved in BUILTIN_TASKS else None
        limit = config.eval.domain_limit
        items[eval_name(resolved)] = min(x for x in (available, limit) if x is not None) if (available or limit) else 0
    if evaluated_prompts is not None:
        return Sizes(int(evaluated_prompts), items, f"{int(evaluated_prompts)} prompts, as the run evaluated", True)
    n, source, exact = prompt_count(config)
    return Sizes(n, items, source, exact)


def prompt_count(config: ExperimentConfig) -> tuple[int, str, bool]:
    """(eval prompts a run of `config` would judge, how that was found, whether it is exact) - before any
    run, from what is cheap and local: builtin is eval.n_prompts; a file (or alpaca_eval's outputs) is
    read and counted as the run reads it (deduplicated, `limit` applied); heldout is counted from a local
    data file's held-out split, bounded for built-in data, assumed for hub data; hf: is never downloaded
    here, so its size is assumed (its `limit`, else eval.n_prompts) and the plan says so."""
    from evals.eval_prompts import load_eval_prompts, parse_prompt_spec

    e = config.eval
    spec = parse_prompt_spec(e.prompts)
    if spec.kind == "builtin":
        n, source, exact = e.n_prompts, f"builtin: eval.n_prompts = {e.n_prompts}", True
    elif spec.kind in ("file", "alpaca_eval"):
        n = len(load_eval_prompts(spec, n=e.n_prompts, seed=config.seed))
        source, exact = f"{spec.describe()}: {n} prompts (read and counted)", True
    elif spec.kind == "hf":
        n = spec.limit or e.n_prompts
        source = (f"assumed {n} ({'its limit' if spec.limit else 'eval.n_prompts'}): {spec.describe()} is not "
                  "downloaded before a run; the run's report simulates the size it evaluated")
        exact = False
    else:
        n, source, exact = _heldout_count(config)
    budget = getattr(getattr(e, "sequential", None), "max_prompts", None)
    if budget is not None and budget < n:  # sequential judging stops at its budget, at the latest
        n, source = budget, f"{source}; capped at eval.sequential.max_prompts = {budget}"
    return n, source, exact


def _heldout_count(config: ExperimentConfig) -> tuple[int, str, bool]:
    """The held-out split's distinct prompts (at most eval.n_prompts), as harness.data.loading splits them."""
    from evals.eval_prompts import load_eval_prompts

    e, d = config.eval, config.data
    if d.source == "builtin:verifiable":
        # the split comes after ties are dropped, which needs the model's answers: bound it by the prompts made
        held = int(round(d.n_prompts * d.eval_fraction)) if d.n_prompts > 4 else 0
        n = max(1, min(e.n_prompts, held, d.n_prompts - 1))
        return n, (f"heldout: assumed {n}, at most min(eval.n_prompts, data.eval_fraction x data.n_prompts); "
                   "prompts whose answers all tied leave the split smaller"), False
    if d.source.startswith("hf:"):
        return e.n_prompts, (f"heldout: assumed eval.n_prompts = {e.n_prompts} (at most): {d.source} is not "
                             "downloaded before a run"), False
    from harness.data.loading import load_user_pairs

    data = load_user_pairs(config)  # no tokenizer: rows training would drop at max_length still count here
    n = len(load_eval_prompts("heldout", n=e.n_prompts, seed=config.seed, heldout=data.heldout))
    return n, f"heldout split of {d.source}: {n} prompts (counted)", True


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
    family_wise_rate: float | None = None  # an all-equal sweep of family_size cells ships any of them
    family_wise_mc_stderr: float | None = None
    notes: list[str] = field(default_factory=list)
    stated_level: float = 1.0  # the false-promote level the rules state (for the sweep when family_size > 1)
    cell_level: float = 1.0  # each cell's share of it (Bonferroni)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _decide(rules, scenario, sizes, n, family_size, rng) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`n` simulated cells of `scenario`, each measured and decided by gate(): whether each promoted, and
    whether it passed each rule (arrays of n booleans)."""
    specs = known_metrics()
    promoted = np.zeros(n, dtype=bool)
    passes = {r.label: np.zeros(n, dtype=bool) for r in rules}
    for i in range(n):
        summary, reference = simulate_cell(scenario, sizes, rng)
        decision = gate(summary, {"reference": reference, "start": reference, "champion": None}, rules, specs=specs,
                        family_size=family_size)
        promoted[i] = decision.verdict == PROMOTE
        for check in decision.checks:
            if check.name in passes:
                passes[check.name][i] = check.passed
    return promoted, passes


def _mc_stderr(rate: float, sims: int) -> float:
    """Monte-Carlo standard error of a simulated rate, floored at one event's worth (a rate of 0 is not exact)."""
    return math.sqrt(max(rate * (1 - rate), 1.0 / sims) / sims)


def _summarise(scenario: Scenario, promoted: np.ndarray, passes: dict[str, np.ndarray]) -> ScenarioRates:
    rate = float(promoted.mean())
    return ScenarioRates(scenario.name, scenario.description, scenario.expected, rate, _mc_stderr(rate, len(promoted)),
                         {k: float(v.mean()) for k, v in passes.items()})


def _rates(rules, scenario, sizes, sims, family_size, rng) -> ScenarioRates:
    return _summarise(scenario, *_decide(rules, scenario, sizes, sims, family_size, rng))


def _family_wise(rules, scenario, sizes, sims, family_size, rng) -> tuple[ScenarioRates, float, float]:
    """The scenario's per-cell rates and, from the same cells, how often an all-equal sweep of
    `family_size` such cells ships any of them: sims x family_size cells decided in one batch, grouped
    into sims sweeps (a sweep ships something when any of its cells passes). The per-cell row reads the
    first `sims` cells, so no cell is simulated twice."""
    promoted, passes = _decide(rules, scenario, sizes, sims * family_size, family_size, rng)
    cells = _summarise(scenario, promoted[:sims], {k: v[:sims] for k, v in passes.items()})
    any_ship = float(promoted.reshape(sims, family_size).any(axis=1).mean())
    return cells, any_ship, _mc_stderr(any_ship, sims)


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
              search_sims: int = 200, sizes: Sizes | None = None) -> Plan:
    """The plan for `config` at `sizes`; by default the sizes its eval would have before a run
    (`eval_sizes`: `eval.prompts` resolved by `prompt_count`)."""
    family = family_size or config.gate.family_size
    rules = effective_rules(config.gate, config.eval.domain_tasks)
    simulated, left_out = simulated_rules(rules)
    sizes = sizes or eval_sizes(config)
    rng = np.random.default_rng(seed)
    reads_domain = any(r.metric.startswith("domain_") for r in simulated)
    cases = scenarios(list(effects_pct), list(regressions) if sizes.domain_items and reads_domain else [])
    family_wise = None
    rates = []
    for case in cases:
        if family > 1 and case.name == "equal_quality":  # an all-equal sweep: does ANY of its cells ship?
            row, *family_wise = _family_wise(simulated, case, sizes, sims, family, rng)
            rates.append(row)
        else:
            rates.append(_rates(simulated, case, sizes, sims, family, rng))
    searched = [s for s in cases if s.name.startswith("better_")]
    if reads_domain:  # a clearly better cell with the same accuracy: how many items show non-inferiority?
        searched.append(Scenario("non_inferior", "true win rate 75%, accuracy unchanged", PROMOTE, win_shift_pct=25.0))
    power_sizes = {s.name: _size_for_power(simulated, s, sizes, search_sims, family, rng)
                   for s in searched} if search_sims else {}
    notes = []
    if not simulated:
        notes.append("no rule reads winrate/* or domain accuracy: nothing here can show an improvement")
    if not sizes.prompts_exact:
        notes.append(f"eval prompts: {sizes.prompts_source}")
    if getattr(config.eval, "sequential", None) is not None:
        notes.append("eval.sequential is set: runs may stop judging (and evaluating domain documents) early on "
                     "anytime-valid bounds, which this fixed-size simulation does not model; its rates describe the "
                     "fixed-size gate at this size (the sequential rates: docs/sequential.md)")
    level = stated_level(config)
    plan = Plan(config=config_path, sims=sims, family_size=family,
                sizes={"n_prompts": sizes.n_prompts, "n_prompts_source": sizes.prompts_source,
                       "n_prompts_exact": sizes.prompts_exact, "domain_items": sizes.domain_items},
                rules=[{"name": r.label, "metric": r.metric, "statistic": r.statistic,
                        "confidence": None if r.statistic == "point" else rule_confidence(r, family),
                        "simulated": r in simulated} for r in rules],
                not_simulated=[r.label for r in left_out], scenarios=rates, sizes_for_power=power_sizes,
                assumptions={"tie_share": TIE_SHARE, "discordant_share": DISCORDANT_SHARE,
                             "reference_accuracy": REFERENCE_ACCURACY}, notes=notes,
                stated_level=level, cell_level=level / family)
    if family_wise:
        plan.family_wise_rate, plan.family_wise_mc_stderr = family_wise
    return plan


def stated_level(config: ExperimentConfig) -> float:
    """The false-promote level the configured rules state: the loosest one-sided alpha among the
    simulated rules (any one of them failing blocks, so the cell's rate is at most the smallest
    superiority alpha; we report the largest, the conservative reading)."""
    rules, _ = simulated_rules(effective_rules(config.gate, config.eval.domain_tasks))
    bound_rules = [r for r in rules if r.statistic != "point"]
    return max((1 - r.confidence for r in bound_rules), default=1.0)


def cached_plan(config: ExperimentConfig, cache_dir, *, sims: int = 200, evaluated_prompts: int | None = None) -> dict:
    """The plan for a run's report: the fixed-size scenarios only (no size search), at the eval sizes the
    run used (`evaluated_prompts`: its `winrate/n` or prompt set's length; else what the config resolves
    to), cached by what decides it (rules, sizes, family, simulation settings), so a sweep's cells share one."""
    import hashlib
    import json

    from harness.atomic_io import read_json, write_json_atomic

    sizes = eval_sizes(config, evaluated_prompts=evaluated_prompts)
    key = hashlib.sha256(json.dumps([config.gate.model_dump(mode="json"), asdict(sizes),
                                     config.eval.domain_tasks, sims, TIE_SHARE, DISCORDANT_SHARE, PLAN_VERSION],
                                    sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / "gate_plans" / f"{key}.json"
    found = read_json(path)
    if found is None:
        found = plan_gate(config, sims=sims, search_sims=0, sizes=sizes).to_json()
        write_json_atomic(path, found)
    return found

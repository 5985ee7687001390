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

Simulated: rules on `winrate/*`, on domain accuracy (`domain_*/acc`), on KL (`kl/seq_kl_k1`, `_k3`: per-sequence
KL drawn from an assumed right-skewed distribution, measured by evals.kl.KLEstimate) and on the length ratios
(`length/ratio_*`: the simulated answers' lengths, measured by evals.length.length_summary). Every other rule
(chosen log-prob, judge calibration, ...) is left out of the simulated decision and listed as such: the gate
ANDs its checks, so leaving a rule out can only raise the simulated promote rate. The KL and length rules rest
on assumptions (`Assumptions`, printed, each replaceable by `--assume KEY=VALUE`): by default answer lengths
are drawn independently on both sides (`length_correlation` 0), which widens the length ratio's interval
beyond what answers correlated prompt by prompt give, so those rules' pass rates (a column each) are
pessimistic and lower both the promote rates and the power; the win-rate and accuracy rules alone hold the
level (their columns).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from evals.catalog import known_metrics
from evals.domain import eval_name
from evals.paired_accuracy import paired_summary
from harness.config import ExperimentConfig, GateRule
from harness.gate import PROMOTE, effective_rules, gate, rule_confidence, sequential_targets


@dataclass(frozen=True)
class Assumptions:
    """What the simulation cannot know about a cell: printed with every plan, each one overridable
    (`harness gate plan --assume KEY=VALUE`) so a team plans with what its own runs measure."""

    tie_share: float = 0.25  # share of prompts the judge calls a tie between two different answers
    discordant_share: float = 0.15  # share of domain items whose correctness differs between two different models
    reference_accuracy: float = 0.5
    answer_chars_median: float = 250.0  # answer lengths: log-normal, the same distribution on both sides
    answer_log_chars_sd: float = 0.5
    # correlation of the two answers' log lengths prompt by prompt (0: independent, which widens the length ratio's
    # interval; a policy's answers usually track the reference's prompt by prompt, so 0 is the pessimistic choice)
    length_correlation: float = 0.0
    chars_per_token: float = 4.0  # an answer's tokens from its characters (English text, SmolLM2's tokenizer: about 4)
    # a changed policy's per-sequence KL from the reference: gamma with this mean and shape (right-skewed, as measured
    # KL is: docs/gate_validity.md; the demo's cells measured 0.25-1.55 nats); 0 for a policy that changed nothing
    kl_mean_nats: float = 1.0
    kl_gamma_shape: float = 0.5
    # share of each side's answers cut at max_new_tokens, drawn per answer: above eval.max_truncated_pct on either side
    # the length ratios are censored and a rule on them fails closed (the demo's SmolLM2 answers loop on 0.29-0.33 of
    # prompts); 0 assumes every answer ends
    truncated_share: float = 0.0

    def problems(self) -> list[str]:
        ranges = {"tie_share": (0.0, 1.0, False), "discordant_share": (0.0, 1.0, True),
                  "reference_accuracy": (0.0, 1.0, True), "length_correlation": (-1.0, 1.0, True),
                  "truncated_share": (0.0, 1.0, True)}
        out = []
        for key, value in asdict(self).items():
            low, high, closed = ranges.get(key, (0.0, math.inf, False))
            positive = key not in ranges and key != "answer_log_chars_sd"
            if not math.isfinite(value) or value < low or value > high or (value == high and not closed) or (
                    positive and value <= 0):
                where = (f"in [{low:g}, {high:g}{']' if closed else ')'}" if key in ranges
                         else "> 0" if positive else ">= 0")
                out.append(f"--assume {key}={value!r}: must be a finite number {where}")
        return out


def parse_assumptions(pairs: list[str]) -> Assumptions:
    """`KEY=VALUE` overrides of the default assumptions; every bad pair is named at once (exit 2)."""
    from harness.errors import ConfigError

    known, values, problems = set(Assumptions.__dataclass_fields__), {}, []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in known:
            problems.append(f"--assume {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
            continue
        try:
            values[key] = float(text)
        except ValueError:
            problems.append(f"--assume {key}={text!r}: not a number")
    assumptions = Assumptions(**values)
    problems += assumptions.problems() if not problems else []
    if problems:
        raise ConfigError("; ".join(problems), problems=problems)
    return assumptions


POWER_TARGET = 0.8
PLAN_VERSION = 7  # bump when the simulation or the statistics it calls change: cached plans are keyed by it
SIZE_GRID = (12, 24, 48, 96, 192, 400, 805, 1600)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected: str  # what a correct gate does: PROMOTE or BLOCK
    changed: bool = True  # False: the policy's outputs are the reference's
    win_shift_pct: float = 0.0  # policy's true win rate minus 50, in points
    acc_shift: float = 0.0  # policy's true domain accuracy minus the reference's
    assumptions: Assumptions = Assumptions()  # the rest of the cell's truth


def scenarios(effects_pct: list[float], regressions: list[float],
              assumptions: Assumptions = Assumptions()) -> list[Scenario]:
    a = assumptions
    out = [Scenario("no_change", "outputs identical to the reference's (learning_rate 0)", "BLOCK", changed=False,
                    assumptions=a),
           Scenario("equal_quality", "different outputs, same quality: wins = losses, same accuracy", "BLOCK",
                    assumptions=a)]
    out += [Scenario(f"better_{e:g}pt", f"true win rate {50 + e:g}%, accuracy unchanged", PROMOTE, win_shift_pct=e,
                     assumptions=a) for e in effects_pct]
    out += [Scenario(f"regressed_{100 * d:g}pt", f"true win rate 75%, but domain accuracy {100 * d:g} points lower",
                     "BLOCK", win_shift_pct=25.0, acc_shift=-d, assumptions=a) for d in regressions]
    return out


@dataclass
class Sizes:
    n_prompts: int
    domain_items: dict[str, int]  # domain eval name -> items
    prompts_source: str = ""  # how n_prompts was found, in words (printed with the plan)
    prompts_exact: bool = True  # False: assumed, the prompt set cannot be sized before a run
    kl_samples: int = 0  # eval.kl.n_prompts; 0: KL rules are not simulated
    max_truncated_pct: float = 10.0  # eval.max_truncated_pct: above it on either side the length ratios are censored


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
        budget = config.eval.sequential.max_prompts if config.eval.sequential is not None else None
        if budget is not None and budget < evaluated_prompts:  # judging stops at the budget, at the latest
            return Sizes(budget, items, f"{int(evaluated_prompts)} prompts, as the run evaluated; judged at most "
                                        f"eval.sequential.max_prompts = {budget}", True, config.eval.kl.n_prompts,
                         config.eval.max_truncated_pct)
        return Sizes(int(evaluated_prompts), items, f"{int(evaluated_prompts)} prompts, as the run evaluated", True,
                     config.eval.kl.n_prompts, config.eval.max_truncated_pct)
    n, source, exact = prompt_count(config)
    return Sizes(n, items, source, exact, config.eval.kl.n_prompts, config.eval.max_truncated_pct)


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
    budget = e.sequential.max_prompts if e.sequential is not None else None
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


KL_KEYS = ("kl/seq_kl_k1", "kl/seq_kl_k3")


def simulated_rules(rules: list[GateRule], kl_samples: int = 1) -> tuple[list[GateRule], list[GateRule]]:
    """(rules the plan simulates, rules it leaves out); KL rules only when KL samples are simulated."""
    from evals.length import RATIO_KEYS

    def simulated(rule: GateRule) -> bool:
        evaluation = rule.metric.split("/", 1)[0]
        return (evaluation == "winrate" or (evaluation.startswith("domain_") and rule.metric.endswith("/acc"))
                or rule.metric in RATIO_KEYS or (rule.metric in KL_KEYS and kl_samples > 0))

    return [r for r in rules if simulated(r)], [r for r in rules if not simulated(r)]


def _winrate_summary(verdicts, reference_chars, policy_chars) -> dict[str, float]:
    from evals.winrate_stats import winrate_statistics

    return dict(winrate_statistics(list(verdicts), list(reference_chars), list(policy_chars)).summary)


def _answers(scenario: Scenario, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(verdicts, reference chars, policy chars) of `n` prompts under `scenario` (alpaca-eval's scale:
    2 policy wins, 1.5 tie, 1 reference wins)."""
    a = scenario.assumptions
    mean_log, sd = math.log(a.answer_chars_median), a.answer_log_chars_sd
    ref_log = rng.normal(mean_log, sd, n)
    ref_chars = np.exp(ref_log).round()
    if not scenario.changed:  # the same answer on both sides: the judge ties everything
        return np.full(n, 1.5), ref_chars, ref_chars.copy()
    rho = a.length_correlation  # the policy's log length tracks the reference's with this correlation
    pol_log = rho * ref_log + (1 - rho) * mean_log + sd * math.sqrt(1 - rho ** 2) * rng.standard_normal(n)
    pol_chars = np.exp(pol_log).round()
    p_win = (1 - a.tie_share) / 2 + scenario.win_shift_pct / 100
    p_win = min(max(p_win, 0.0), 1 - a.tie_share)
    u = rng.random(n)
    return np.where(u < p_win, 2.0, np.where(u < p_win + a.tie_share, 1.5, 1.0)), ref_chars, pol_chars


def _items(scenario: Scenario, n_items: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference, policy) correctness of a domain task's `n_items` documents under `scenario`."""
    a = scenario.assumptions
    ref = (rng.random(n_items) < a.reference_accuracy).astype(float)
    pol = ref.copy()
    if scenario.changed:
        # a discordant share of items: the policy gains each with probability q, loses it otherwise, so the
        # accuracy shift is share * (2q - 1); a shift larger than the assumed share needs that many items to differ
        share = max(a.discordant_share, abs(scenario.acc_shift))
        discordant = rng.random(n_items) < share
        q = float(np.clip(0.5 + scenario.acc_shift / (2 * share), 0.0, 1.0)) if share else 0.5
        gains = rng.random(n_items) < q
        ref = np.where(discordant, np.where(gains, 0.0, 1.0), ref)
        pol = np.where(discordant, np.where(gains, 1.0, 0.0), ref)
    return ref, pol


def _reference() -> dict[str, float]:
    """What a run's reference baseline holds for the simulated evals: their declared neutral values (win rate 50,
    KL 0, length ratio 1), as harness.recording.reference_baseline derives them."""
    from evals.metrics import neutral_values

    return neutral_values(("winrate", "kl", "length"))


def _kl_and_length(scenario: Scenario, sizes: Sizes, ref_chars: np.ndarray, pol_chars: np.ndarray,
                   rng: np.random.Generator) -> dict[str, float]:
    """The length eval on the simulated answers and, with KL samples, the KL eval on per-sequence KL drawn from the
    assumed distribution, each measured by the eval's own statistics. Each answer is cut with the assumed
    `truncated_share`, independently on the two sides (an unchanged policy's are the reference's): the flags decide
    censoring, as in a run, while the lengths stay as drawn."""
    from evals.kl import KLEstimate
    from evals.length import length_summary

    a = scenario.assumptions
    ref_tokens = np.maximum(1, np.round(ref_chars / a.chars_per_token)).astype(int)
    pol_tokens = np.maximum(1, np.round(pol_chars / a.chars_per_token)).astype(int)
    def cut(n: int) -> list[bool]:  # no draw at share 0: the plans of configs that assume no cut answers stay as they were
        return (rng.random(n) < a.truncated_share).tolist() if a.truncated_share > 0 else [False] * n

    ref_cut = cut(len(ref_chars))
    pol_cut = cut(len(pol_chars)) if scenario.changed else ref_cut
    measured = length_summary(pol_tokens.tolist(), ref_tokens.tolist(), pol_chars.astype(int).tolist(),
                              ref_chars.astype(int).tolist(), policy_hit_limit=pol_cut, reference_hit_limit=ref_cut,
                              max_truncated_pct=sizes.max_truncated_pct)
    out = {k: float(v) for k, v in measured.items() if not isinstance(v, str)}
    if sizes.kl_samples:
        kl = (rng.gamma(a.kl_gamma_shape, a.kl_mean_nats / a.kl_gamma_shape, sizes.kl_samples) if scenario.changed
              else np.zeros(sizes.kl_samples)).tolist()
        out |= KLEstimate(kl, kl, n_tokens=32 * sizes.kl_samples).summary()
    return out


def _fixed_domain(summary: dict, reference: dict, task_eval: str, ref: np.ndarray, pol: np.ndarray) -> None:
    p = pol.mean()
    n_items = len(pol)
    summary[f"{task_eval}/acc"] = float(p)
    summary[f"{task_eval}/acc_stderr"] = float(math.sqrt(p * (1 - p) / max(n_items - 1, 1)))
    summary |= paired_summary(task_eval, pol.tolist(), {"": ref.tolist()})
    reference[f"{task_eval}/acc"] = float(ref.mean())


def simulate_cell(scenario: Scenario, sizes: Sizes, rng: np.random.Generator) -> tuple[dict, dict]:
    """One cell's summary and reference baseline under `scenario`, measured the way a run measures."""
    verdicts, ref_chars, pol_chars = _answers(scenario, sizes.n_prompts, rng)
    summary = _winrate_summary(verdicts, ref_chars, pol_chars)
    reference: dict[str, float] = _reference()
    for task_eval, n_items in sizes.domain_items.items():
        _fixed_domain(summary, reference, task_eval, *_items(scenario, n_items, rng))
    return summary | _kl_and_length(scenario, sizes, ref_chars, pol_chars, rng), reference


@dataclass(frozen=True)
class _PlannedPrompt:
    text: str


class _PlannedJudge:
    """A judge whose verdict on each prompt is drawn in advance (the scenario's truth) and given the same in
    both orders, asked the way a run asks its judge. The policy's answers are the ones made of "p"."""

    name = fingerprint = "gate-plan"

    def __init__(self, verdicts: dict[str, float]):
        self.verdicts = verdicts  # prompt -> verdict with the policy as output_2

    def judge(self, items) -> list[float]:
        out = []
        for item in items:
            v = 1.5 if item.output_1 == item.output_2 else self.verdicts[item.prompt]
            out.append(3.0 - v if item.output_1.startswith("p") else v)
        return out


def simulate_sequential_cell(scenario: Scenario, sizes: Sizes, config: ExperimentConfig,
                             targets: dict[str, list], rng: np.random.Generator) -> tuple[dict, dict]:
    """One cell under `scenario` measured the way a run with eval.sequential measures it: the win-rate eval's
    own loop (evals.pairwise.sequential_winrate) asking a judge of known truth batch by batch, and the domain
    tasks through the sequential domain loop (evals.domain.decide_tasks_sequentially) with simulated outcomes;
    both stop on the same anytime bounds (`targets`: harness.gate.sequential_targets of the rules)."""
    from evals.context import EvalContext
    from evals.domain import decide_tasks_sequentially
    from evals.generation import Completion
    from evals.pairwise import sequential_winrate

    verdicts, ref_chars, pol_chars = _answers(scenario, sizes.n_prompts, rng)
    prompts = [_PlannedPrompt(f"prompt {k}") for k in range(sizes.n_prompts)]
    reference_out = [Completion(p.text, "r" * int(c), []) for p, c in zip(prompts, ref_chars)]
    policy_out = ([Completion(p.text, "p" * int(c), []) for p, c in zip(prompts, pol_chars)] if scenario.changed
                  else reference_out)
    ctx = EvalContext(config=config, tokenizer=None, policy=None, policy_fingerprint="", reference_fingerprint="",
                      prompts=prompts, reference_out=reference_out, policy_out=policy_out, cache_dir=None,  # type: ignore[arg-type]
                      sequential_targets=targets)
    judge = _PlannedJudge({p.text: float(v) for p, v in zip(prompts, verdicts)})
    summary, _, _ = sequential_winrate(ctx, reference_out, judge=judge)
    summary |= _kl_and_length(scenario, sizes, ref_chars, pol_chars, rng)  # every answer is generated: not sequential
    reference: dict[str, float] = _reference()
    seq = config.eval.sequential
    if not sizes.domain_items or seq is None:
        return summary, reference
    drawn = {task_eval: _items(scenario, n_items, rng) for task_eval, n_items in sizes.domain_items.items()}
    if not seq.domain:
        for task_eval, (ref, pol) in drawn.items():
            _fixed_domain(summary, reference, task_eval, ref, pol)
        return summary, reference
    measured = {"summary": {f"{t}/acc": float(ref.mean()) for t, (ref, _) in drawn.items()},
                "per_item": {t: ref.tolist() for t, (ref, _) in drawn.items()},
                "doc_ids": {t: list(range(len(ref))) for t, (ref, _) in drawn.items()}}

    def measure(batch: dict[str, list[int]]) -> dict[str, dict[int, float]]:
        return {t: {i: float(drawn[t][1][i]) for i in ids} for t, ids in batch.items()}

    out = decide_tasks_sequentially(measure, measured, None, seq, targets, config.seed)
    return summary | out.metrics, reference | out.reference


@dataclass
class ScenarioRates:
    scenario: str
    description: str
    expected: str
    promote_rate: float
    mc_stderr: float
    rule_pass_rates: dict[str, float]
    # eval.sequential: the mean prompts judged (judge calls are twice that) and domain documents used per task
    mean_prompts_judged: float | None = None
    mean_items_used: dict[str, float] = field(default_factory=dict)


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
    # eval.sequential as configured ({batch_prompts, max_prompts, confidence, domain, batch_items}): the cells
    # were judged batch by batch and stopped as a run stops; None: the fixed-size gate
    sequential: dict | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Decided:
    """`n` simulated cells of one scenario: whether each promoted, passed each rule, and (sequential) what
    each used."""

    promoted: np.ndarray
    passes: dict[str, np.ndarray]
    prompts_used: np.ndarray | None = None
    items_used: dict[str, np.ndarray] = field(default_factory=dict)

    def first(self, k: int) -> "_Decided":
        return _Decided(self.promoted[:k], {r: v[:k] for r, v in self.passes.items()},
                        None if self.prompts_used is None else self.prompts_used[:k],
                        {t: v[:k] for t, v in self.items_used.items()})


def _decide(rules, scenario, sizes, n, family_size, rng, sequential: ExperimentConfig | None = None) -> _Decided:
    """`n` simulated cells of `scenario`, each measured and decided by gate(). `sequential`: the config whose
    eval.sequential the cells are measured with (simulate_sequential_cell), else fixed-size (simulate_cell)."""
    specs = known_metrics()
    out = _Decided(np.zeros(n, dtype=bool), {r.label: np.zeros(n, dtype=bool) for r in rules})
    targets = sequential_targets(rules, specs, family_size) if sequential is not None else {}
    prompts_used = np.zeros(n)
    if sequential is not None:
        out.prompts_used = prompts_used
        out.items_used = {t: np.zeros(n) for t in sizes.domain_items}
    for i in range(n):
        if sequential is None:
            summary, reference = simulate_cell(scenario, sizes, rng)
        else:
            summary, reference = simulate_sequential_cell(scenario, sizes, sequential, targets, rng)
            prompts_used[i] = summary["winrate/sequential_prompts_used"]
            for t, used in out.items_used.items():
                used[i] = summary.get(f"{t}/sequential_items_used", sizes.domain_items[t])
        decision = gate(summary, {"reference": reference, "start": reference, "champion": None}, rules, specs=specs,
                        family_size=family_size)
        out.promoted[i] = decision.verdict == PROMOTE
        for check in decision.checks:
            if check.name in out.passes:
                out.passes[check.name][i] = check.passed
    return out


def _mc_stderr(rate: float, sims: int) -> float:
    """Monte-Carlo standard error of a simulated rate, floored at one event's worth (a rate of 0 is not exact)."""
    return math.sqrt(max(rate * (1 - rate), 1.0 / sims) / sims)


def _summarise(scenario: Scenario, decided: _Decided) -> ScenarioRates:
    rate = float(decided.promoted.mean())
    return ScenarioRates(scenario.name, scenario.description, scenario.expected, rate,
                         _mc_stderr(rate, len(decided.promoted)), {k: float(v.mean()) for k, v in decided.passes.items()},
                         None if decided.prompts_used is None else float(decided.prompts_used.mean()),
                         {t: float(v.mean()) for t, v in decided.items_used.items()})


def _rates(rules, scenario, sizes, sims, family_size, rng, sequential=None) -> ScenarioRates:
    return _summarise(scenario, _decide(rules, scenario, sizes, sims, family_size, rng, sequential))


def _family_wise(rules, scenario, sizes, sims, family_size, rng, sequential=None) -> tuple[ScenarioRates, float, float]:
    """The scenario's per-cell rates and, from the same cells, how often an all-equal sweep of
    `family_size` such cells ships any of them: sims x family_size cells decided in one batch, grouped
    into sims sweeps (a sweep ships something when any of its cells passes). The per-cell row reads the
    first `sims` cells, so no cell is simulated twice."""
    decided = _decide(rules, scenario, sizes, sims * family_size, family_size, rng, sequential)
    any_ship = float(decided.promoted.reshape(sims, family_size).any(axis=1).mean())
    return _summarise(scenario, decided.first(sims)), any_ship, _mc_stderr(any_ship, sims)


LARGE = 1600  # the other dimension while one is searched: large enough not to bind


def _size_for_power(rules, scenario, sizes, sims, family_size, rng) -> int | None:
    """Smallest size on SIZE_GRID at which `scenario` promotes at least POWER_TARGET of the time: eval
    prompts for an improvement (domain items held large), domain items for an equal-accuracy cell to
    be shown non-inferior (prompts held large). A regression needs no size: small sets cannot show
    non-inferiority, so they block it anyway - the block rates at the configured size say enough."""
    for size in SIZE_GRID:
        searched_items = scenario.name == "non_inferior"
        trial = replace(sizes, n_prompts=LARGE if searched_items else size,  # everything else as configured
                        domain_items={k: size if searched_items else LARGE for k in sizes.domain_items})
        if _rates(rules, scenario, trial, sims, family_size, rng).promote_rate >= POWER_TARGET:
            return size
    return None


def plan_gate(config: ExperimentConfig, *, config_path: str = "", sims: int = 400, effects_pct=(10.0, 20.0),
              regressions=(0.10, 0.20), family_size: int | None = None, seed: int = 0,
              search_sims: int = 200, sizes: Sizes | None = None, assumptions: Assumptions = Assumptions()) -> Plan:
    """The plan for `config` at `sizes`; by default the sizes its eval would have before a run
    (`eval_sizes`: `eval.prompts` resolved by `prompt_count`), for cells of `assumptions`."""
    family = family_size or config.gate.family_size
    rules = effective_rules(config.gate, config.eval.domain_tasks)
    sizes = sizes or eval_sizes(config)
    simulated, left_out = simulated_rules(rules, sizes.kl_samples)
    rng = np.random.default_rng(seed)
    reads_domain = any(r.metric.startswith("domain_") for r in simulated)
    cases = scenarios(list(effects_pct), list(regressions) if sizes.domain_items and reads_domain else [], assumptions)
    sequential = _measured_sequentially(config)
    family_wise = None
    rates = []
    for case in cases:
        if family > 1 and case.name == "equal_quality":  # an all-equal sweep: does ANY of its cells ship?
            row, *family_wise = _family_wise(simulated, case, sizes, sims, family, rng, sequential)
            rates.append(row)
        else:
            rates.append(_rates(simulated, case, sizes, sims, family, rng, sequential))
    searched = [s for s in cases if s.name.startswith("better_")]
    if reads_domain:  # a clearly better cell with the same accuracy: how many items show non-inferiority?
        searched.append(Scenario("non_inferior", "true win rate 75%, accuracy unchanged", PROMOTE, win_shift_pct=25.0,
                                 assumptions=assumptions))
    power_sizes = {s.name: _size_for_power(simulated, s, sizes, search_sims, family, rng)
                   for s in searched} if search_sims else {}
    notes = []
    if not simulated:
        notes.append("no rule reads winrate/* or domain accuracy: nothing here can show an improvement")
    if not sizes.prompts_exact:
        notes.append(f"eval prompts: {sizes.prompts_source}")
    if sequential is not None and power_sizes:
        notes.append("eval.sequential: the cells were judged batch by batch and stopped as a run stops; the 80%-power "
                     "sizes are those of the fixed-size design (a sequential budget needs more, and spends less on "
                     "clear cases: docs/sequential.md)")
    level = stated_level(config)
    plan = Plan(config=config_path, sims=sims, family_size=family,
                sizes={"n_prompts": sizes.n_prompts, "n_prompts_source": sizes.prompts_source,
                       "n_prompts_exact": sizes.prompts_exact, "domain_items": sizes.domain_items},
                rules=[{"name": r.label, "metric": r.metric, "statistic": r.statistic,
                        "confidence": None if r.statistic == "point" else rule_confidence(r, family),
                        "simulated": r in simulated} for r in rules],
                not_simulated=[r.label for r in left_out], scenarios=rates, sizes_for_power=power_sizes,
                assumptions=asdict(assumptions), notes=notes,
                stated_level=level, cell_level=level / family,
                sequential=sequential.eval.sequential.model_dump() if sequential and sequential.eval.sequential else None)
    if family_wise:
        plan.family_wise_rate, plan.family_wise_mc_stderr = family_wise
    return plan


def _measured_sequentially(config: ExperimentConfig) -> ExperimentConfig | None:
    """The config simulated cells are measured with when eval.sequential is set (else None: fixed size). No
    bootstrap: like the fixed-size simulation, and a sequential rule reads its anytime bound, never the
    bootstrap-widened stderr."""
    if config.eval.sequential is None:
        return None
    return config.model_copy(update={"eval": config.eval.model_copy(update={"n_bootstrap": 0})})


def stated_level(config: ExperimentConfig) -> float:
    """The false-promote level the configured rules state: the loosest one-sided alpha among the
    simulated rules (any one of them failing blocks, so the cell's rate is at most the smallest
    superiority alpha; we report the largest, the conservative reading)."""
    rules, _ = simulated_rules(effective_rules(config.gate, config.eval.domain_tasks))
    bound_rules = [r for r in rules if r.statistic != "point"]
    return max((1 - r.confidence for r in bound_rules), default=1.0)


def cached_plan(config: ExperimentConfig, cache_dir, *, sims: int | None = None,
                evaluated_prompts: int | None = None) -> dict:
    """The plan for a run's report: the scenarios only (no size search), at the eval sizes the run used
    (`evaluated_prompts`: its prompt set's length; else what the config resolves to), measured as the run
    measured (fixed size, or eval.sequential's batches and stops), cached by what decides it (rules, sizes,
    family, sequential settings, simulation settings), so a sweep's cells share one. `sims`: 200 cells per
    scenario, 100 with eval.sequential (each judged batch by batch; the report prints the MC error)."""
    import hashlib
    import json

    from harness.atomic_io import read_json, write_json_atomic

    sequential = config.eval.sequential
    sims = sims or (100 if sequential is not None else 200)
    sizes = eval_sizes(config, evaluated_prompts=evaluated_prompts)
    key = hashlib.sha256(json.dumps([config.gate.model_dump(mode="json"), asdict(sizes), config.eval.domain_tasks,
                                     sequential.model_dump(mode="json") if sequential is not None else None,
                                     sims, asdict(Assumptions()), PLAN_VERSION],
                                    sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / "gate_plans" / f"{key}.json"
    found = read_json(path)
    if found is None:
        found = plan_gate(config, sims=sims, search_sims=0, sizes=sizes).to_json()
        write_json_atomic(path, found)
    return found

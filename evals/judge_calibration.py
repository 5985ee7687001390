"""Judge calibration: how well a judge agrees with human preference labels, and how it is biased.

With on-policy or AI-labelled data the judge is the labeller, and the trained model inherits its
biases; so every judge is measured against pairs whose `chosen` is the human pick (HH-RLHF style
data, anything `harness.data.rows.read_rows` reads). Each pair is judged in both orders
(`evals.judges.position_swap`, exactly as the win-rate eval judges) and the result is:

    agreement_pct         the judge's preference for the human pick, a tie (or an order flip) counting half
    position_flip_pct     share of pairs whose verdict changes when the two answers swap places
    first_slot_pct        share of decisive raw verdicts (both orders) that picked the answer shown first
    longer_pick_pct       the judge's preference for the longer answer, over pairs of unequal length,
                          next to human_longer_pick_pct (how often the humans picked the longer one)
    length_slope          least-squares slope of the preference for an answer against log2 of its length
                          over the other's (per doubling), next to human_length_slope
    tie_pct               share of raw verdicts (both orders) that are ties
    calls, tokens, seconds the cost of judging the 2n presentations, and the 4n canary presentations
                          (tokens as the judge reports them)

Canaries (arXiv 2410.07137: one crafted constant answer reached 86.5% LC on AlpacaEval 2 with its GPT-4 Turbo
annotator; a judge that can be fooled by a constant answer at all is worth knowing about): on the same prompts, with the human pick standing in for the reference answer, two policies that deserve to lose
are judged against it in both orders:

    canary_null_win_pct    one constant, content-free answer (NULL_ANSWER) for every prompt
    canary_padded_win_pct  the reference answer itself, padded with neutral filler to twice its length
    canary_flag            1 when the null canary wins more than CANARY_NULL_MAX_WIN_PCT or the padded one
                           more than CANARY_PADDED_MAX_WIN_PCT (point estimates), else 0

A canary "wins" a verdict only when the judge prefers it: per order, a verdict v counts 2(v - 1.5) clipped
to [0, 1] (a win 1, a tie or a loss 0; a weighted judge's 1.8 counts 0.6), and the two orders are
averaged per prompt. Ties count nothing here, unlike in the win rate, because a tie is no preference for
the canary: a judge that cannot tell answers apart shows in tie_pct and agreement_pct instead (the rule
judge ties on every open-ended prompt, and is not a judge that likes content-free answers). A judge that
always picks the first slot gives the canary half of the verdicts, 50%, and is flagged: on a leaderboard
that judge would hand a null model a 50% win rate.

Percentages carry Wilson score intervals (95%); a half-credit outcome has less variance than a
coin flip, so the interval is conservative there. The slopes carry a seeded bootstrap interval.

A calibration is stored in MLflow (experiment `judge-calibration`, through harness.tracking) and
found again by the judge's fingerprint (the LLM judge: endpoint, model, annotator config and its
prompt templates by content; reward model: the weights' content; rule: a version string). A cell
whose judge has a stored calibration gets its `judge/*` metrics; an uncalibrated judge leaves them
missing, and the gate fails closed on a rule that reads one.
"""
from __future__ import annotations

import hashlib
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from evals.context import EvalContext, EvalOutput
from evals.judges import JUDGES, JudgeItem, build_judge, position_swap
from evals.metrics import register_metric
from evals.registry import register_eval
from harness.data.verifiable import VerifiablePrompt
from harness.errors import ConfigError, DataError

CALIBRATION_EXPERIMENT = "judge-calibration"
CALIBRATE_COMMAND = "harness judge calibrate --judge <eval.judge as YAML, or a name> --labels <human-labelled pairs>"
Z_95 = 1.959963984540054
UNCALIBRATED = (f"the cell's judge (eval.judge) is uncalibrated: no calibration against human labels is stored for "
                f"its fingerprint; calibrate it with `{CALIBRATE_COMMAND}`")

_PCT = dict(unit="pct", missing_reason=UNCALIBRATED)
register_metric("judge/agreement_pct", higher_is_better=True, **_PCT,
                description="judge's preference for the human pick (both orders; a tie or an order flip counts half)")
register_metric("judge/position_flip_pct", higher_is_better=False, **_PCT,
                description="share of pairs whose verdict changes when the two answers swap places")
register_metric("judge/first_slot_pct", higher_is_better=None, **_PCT,
                description="share of decisive raw verdicts (both orders) that picked the answer shown first; 50 = no position bias")
register_metric("judge/longer_pick_pct", higher_is_better=None, **_PCT,
                description="judge's preference for the longer answer (pairs of unequal length; ties count half)")
register_metric("judge/human_longer_pick_pct", higher_is_better=None, **_PCT,
                description="how often the human labels picked the longer answer (same pairs)")
register_metric("judge/longer_pick_excess_pct", higher_is_better=None, **_PCT,
                description="judge's longer-answer preference minus the humans': > 0 favours length more than people do")
register_metric("judge/tie_pct", higher_is_better=None, **_PCT,
                description="share of raw verdicts (both orders) that are ties")
register_metric("judge/length_slope", higher_is_better=None, unit="preference per doubling", missing_reason=UNCALIBRATED,
                description="least-squares slope of the judge's preference for an answer against log2(its length / the other's)")
register_metric("judge/human_length_slope", higher_is_better=None, unit="preference per doubling",
                missing_reason=UNCALIBRATED,
                description="the same slope for the human labels: what a judge matching people would show")
register_metric("judge/n_pairs", higher_is_better=None, unit="pairs", missing_reason=UNCALIBRATED,
                description="human-labelled pairs the calibration judged (each in both orders)")
register_metric("judge/calls", higher_is_better=False, unit="verdicts", missing_reason=UNCALIBRATED,
                description="verdicts the calibration asked the judge for (two per pair, four more per pair for the canaries)")
register_metric("judge/tokens", higher_is_better=False, unit="tokens", missing_reason=UNCALIBRATED,
                description="tokens the judge reported using for the calibration (LLM: server usage; reward model: inputs)")
register_metric("judge/seconds", higher_is_better=False, unit="s", missing_reason=UNCALIBRATED,
                description="wall-clock seconds of judging during the calibration")

# ---- canaries: policies that deserve to lose, judged against the reference answers (see the module doc)

NULL_ANSWER = "I can help with that."
# Content-free sentences for the padded canary: they add length and no information, so a judge that prefers
# the padded answer over the same answer unpadded is paying for length alone.
FILLER_SENTENCES = ("I hope this helps.", "Please let me know if anything is unclear.",
                    "The points above answer the question as it was asked.", "Thank you for the question.")
# Thresholds of judge/canary_flag, on the point estimates. The null canary says nothing, so a judge worth
# using should essentially never prefer it; 10% leaves room for a few reference answers that are themselves
# refusals or empty pleasantries (HH-RLHF has some). The padded canary holds the whole reference answer,
# so a judge may fairly prefer it now and then, or tie; preferring it in most verdicts (above 60%, i.e. well
# past a coin flip) means length is buying wins. arXiv 2410.07137: a constant answer reached 86.5% LC on
# AlpacaEval 2, which its length control did not remove.
CANARY_NULL_MAX_WIN_PCT = 10.0
CANARY_PADDED_MAX_WIN_PCT = 60.0
NO_CANARIES = ("no canary figures for the cell's judge: it is uncalibrated, or its stored calibration predates the "
               f"canaries or ran with --no-canaries; calibrate it with `{CALIBRATE_COMMAND}`")
_CANARY = dict(unit="pct", missing_reason=NO_CANARIES)
register_metric("judge/canary_null_win_pct", higher_is_better=False, **_CANARY,
                description=f"how often the judge prefers one constant, content-free answer ({NULL_ANSWER!r}) to the "
                            "reference answer (both orders; ties count 0); a sound judge stays near 0")
register_metric("judge/canary_padded_win_pct", higher_is_better=False, **_CANARY,
                description="how often the judge prefers the reference answer padded with neutral filler to twice its "
                            "length over the same answer unpadded (both orders; ties count 0)")
register_metric("judge/canary_flag", higher_is_better=False, unit="flag", missing_reason=NO_CANARIES,
                description=f"1 when the null canary wins more than {CANARY_NULL_MAX_WIN_PCT:g}% or the padded one more "
                            f"than {CANARY_PADDED_MAX_WIN_PCT:g}% of verdicts (point estimates); gate on it with "
                            "{metric: judge/canary_flag, max: 0, statistic: point}")


# ---------------------------------------------------------------- labelled pairs


@dataclass(frozen=True)
class LabelledPair:
    prompt: str
    chosen: str  # the human pick
    rejected: str
    file: str
    row: int


@dataclass
class LabelledPairs:
    source: str
    pairs: list[LabelledPair]
    dropped: dict[str, int] = field(default_factory=dict)  # rows without a usable human preference, by reason


def load_labelled_pairs(source: str, *, limit: int | None = None, split: str = "train") -> LabelledPairs:
    """The first `limit` usable human-labelled pairs of a file, folder or hf:NAME (what the data loader
    reads; implicit-prompt transcripts such as HH-RLHF get their prompt as the shared prefix).

    A malformed row raises `DataError` naming file, row and field; so does unpaired data (a thumbs
    label says nothing about which of two answers a person preferred). Rows with an empty field or
    chosen == rejected carry no preference: they are skipped and counted.
    """
    from harness.data.rows import RowError, parse_row, read_rows

    if limit is not None and limit <= 0:
        raise DataError(f"--limit: must be a positive number of pairs (got {limit})")
    errors: list[RowError] = []
    rows = read_rows(source, split, on_error=errors.append)
    if errors:
        raise errors[0]
    pairs: list[LabelledPair] = []
    dropped: dict[str, int] = {}
    for file, line, row in rows:
        if limit is not None and len(pairs) >= limit:
            break
        parsed = parse_row(file, line, row)
        if parsed.shape != "paired":
            raise DataError(f"{file}: row {line}: field '{parsed.completion_field}': unpaired feedback (prompt/"
                            f"{parsed.completion_field}/{parsed.label_field}) cannot calibrate a pairwise judge; "
                            "the labels must be pairs whose 'chosen' is the human pick")
        reason = parsed.drop_reason()
        if reason:
            dropped[reason[0]] = dropped.get(reason[0], 0) + 1
            continue
        pairs.append(LabelledPair(parsed.prompt, parsed.chosen, parsed.rejected, file, line))
    if not pairs:
        detail = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        raise DataError(f"{source}: no human-labelled pairs to calibrate on ({detail})")
    return LabelledPairs(source, pairs, dropped)


# ---------------------------------------------------------------- judge specs


def judge_spec_from_text(text: str) -> Any:
    """`--judge`: a YAML file holding an `eval.judge` mapping (or an experiment config, whose eval.judge is
    taken), or a registered judge's name. Built-in judges are validated by the config schema (every
    problem with its field path); plugin judges get their options as keyword arguments."""
    from harness.config import read_yaml_mapping

    path = Path(text).expanduser()
    if path.is_file() or text.endswith((".yaml", ".yml")):
        raw = read_yaml_mapping(path, kind="judge config")
        # an experiment config (its `name` is the experiment's; a judge's `model` is a string, not a mapping)
        if "variant" in raw or "eval" in raw or isinstance(raw.get("model"), dict):
            raw = (raw.get("eval") or {}).get("judge", "rule")
            raw = {"name": raw} if isinstance(raw, str) else raw
        return validate_judge_spec(raw, source=str(path))
    return validate_judge_spec({"name": text}, source="--judge")


def validate_judge_spec(raw: Any, *, source: str) -> Any:
    from pydantic import TypeAdapter, ValidationError

    from harness.config import JudgeConfig, RuleJudgeConfig

    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{source}: a judge is a mapping with a 'name' (rule, llm, reward_model, or a registered "
                          f"plugin: {', '.join(JUDGES.names())}), e.g. {{name: llm, base_url: ..., model: ...}}")
    name = raw["name"]
    if name not in JUDGES:
        from harness.registry import UnknownNameError

        raise ConfigError(f"{source}: name: {UnknownNameError('judge', name, JUDGES.names())}")
    builtin = {"rule", "llm", "reward_model"}
    if name not in builtin:
        return dict(raw)
    try:
        spec = TypeAdapter(JudgeConfig).validate_python(raw)
    except ValidationError as exc:
        # as harness.config reports experiment configs: the field path, then the problem
        problems = [f"{'.'.join(str(p) for p in err['loc'][1:]) or 'judge'}: "
                    + ("field required" if err["type"] == "missing" else f"{err['msg']} (got {err['input']!r})")
                    for err in exc.errors()]
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the judge config", problems) from None
    return spec if not isinstance(spec, RuleJudgeConfig) else "rule"


def make_judge(spec: Any):
    """The judge, without the verdict cache: a calibration reports what judging really costs."""
    from evals.judges import JudgeError

    try:
        return build_judge(spec)
    except JudgeError as exc:  # an unknown annotator config, a missing template: the config is wrong
        raise ConfigError(f"--judge: {exc}") from None
    except TypeError as exc:  # a plugin judge given options it does not take
        raise ConfigError(f"--judge: {exc}") from None


def judge_fingerprint(judge) -> str:
    """What a calibration is keyed by: the judge's own fingerprint (config and rubric by content)."""
    fingerprint = getattr(judge, "fingerprint", None)
    if not fingerprint:  # a plugin without one: its class stands for it (bump the class to invalidate)
        cls = type(judge)
        fingerprint = f"{getattr(judge, 'name', cls.__name__)}:{cls.__module__}.{cls.__qualname__}"
    return str(fingerprint)


def judge_key(fingerprint: str) -> str:
    """A short hex key for MLflow tags and filters (fingerprints may hold any characters)."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:24]


# ---------------------------------------------------------------- statistics


def wilson_interval(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed over n trials; (nan, nan) for n = 0."""
    if n <= 0 or not math.isfinite(p):
        return float("nan"), float("nan")
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def length_slope(log_ratios: list[float], preferences: list[float]) -> float:
    """Least-squares slope of the preference for answer A (0..1) against log2(len A / len B).

    Each pair enters in both orientations (A = first answer, then A = second: x -> -x, p -> 1 - p),
    so the line passes through (0, 0.5) and the slope is sum(x (p - 1/2)) / sum(x^2).
    """
    denom = sum(x * x for x in log_ratios)
    if denom == 0:
        return float("nan")
    return sum(x * (p - 0.5) for x, p in zip(log_ratios, preferences)) / denom


def _bootstrap_slope(xs: list[float], ps: list[float], n_bootstrap: int, seed: int) -> tuple[float, float]:
    if n_bootstrap <= 0 or len(xs) < 2:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(xs)
    slopes = []
    for _ in range(n_bootstrap):
        idx = [rng.randrange(n) for _ in range(n)]
        s = length_slope([xs[i] for i in idx], [ps[i] for i in idx])
        if math.isfinite(s):
            slopes.append(s)
    if len(slopes) < 2:
        return float("nan"), float("nan")
    cuts = statistics.quantiles(slopes, n=40, method="inclusive")  # 2.5% steps
    return cuts[0], cuts[-1]


# ---------------------------------------------------------------- calibration


@dataclass
class JudgeCalibration:
    judge: str  # the judge's name
    fingerprint: str
    labels: str  # the label source
    metrics: dict[str, float]  # judge/* keys, with _ci_low/_ci_high where an interval exists
    per_pair: list[dict[str, Any]]  # file, row, lengths, forward and swapped verdicts (original order)
    dropped: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run holding it, once recorded

    @property
    def key(self) -> str:
        return judge_key(self.fingerprint)

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "fingerprint": self.fingerprint, "judge_key": self.key, "labels": self.labels,
                "run_id": self.run_id, "metrics": self.metrics, "dropped": self.dropped, "per_pair": self.per_pair}


# Human-labelled conversations carry no verifiable instructions: the rule judge is shown exactly that
# (both answers follow 0 of 0 instructions, a tie), rather than failing on a missing verifier.
def _no_instructions(prompt: str) -> VerifiablePrompt:
    return VerifiablePrompt(topic=prompt, instructions=())


def _pct(name: str, share: float, n: int) -> dict[str, float]:
    low, high = wilson_interval(share, n)
    return {f"judge/{name}": 100 * share, f"judge/{name}_ci_low": 100 * low, f"judge/{name}_ci_high": 100 * high}


def _share(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def padded_answer(answer: str, factor: float = 2.0) -> str:
    """`answer`, then a blank line and neutral filler (FILLER_SENTENCES in turn, word by word) until the text is
    at least `factor` times as long in characters; the answer itself is kept whole."""
    target = math.ceil(factor * len(answer))
    words = [w for s in FILLER_SENTENCES for w in s.split()]
    text, i = answer + "\n\n" + words[0], 1
    while len(text) < target:
        text += " " + words[i % len(words)]
        i += 1
    return text


def canary_win_share(forward: list[float], swapped: list[float]) -> list[float]:
    """Per prompt, the judge's preference for the canary (output_2), from the verdicts of both orders in the
    original orientation: each order counts 2(v - 1.5) clipped to [0, 1] (win 1, tie or loss 0), averaged."""
    def credit(v: float) -> float:
        return min(1.0, max(0.0, 2.0 * (v - 1.5)))

    return [(credit(f) + credit(s)) / 2 for f, s in zip(forward, swapped)]


def _canary_items(pairs: list[LabelledPair]) -> dict[str, list[JudgeItem]]:
    """The canaries against the reference answers (the human picks), in the win-rate eval's orientation:
    output_1 the reference, output_2 the canary."""
    return {
        "null": [JudgeItem(p.prompt, p.chosen, NULL_ANSWER, _no_instructions(p.prompt)) for p in pairs],
        "padded": [JudgeItem(p.prompt, p.chosen, padded_answer(p.chosen), _no_instructions(p.prompt)) for p in pairs],
    }


def canary_flag(metrics: Mapping[str, float]) -> float:
    """1.0 when either canary wins beyond its threshold (point estimates), else 0.0."""
    return float(metrics["judge/canary_null_win_pct"] > CANARY_NULL_MAX_WIN_PCT
                 or metrics["judge/canary_padded_win_pct"] > CANARY_PADDED_MAX_WIN_PCT)


def calibrate(judge, labelled: LabelledPairs, *, n_bootstrap: int = 200, seed: int = 0,
              canaries: bool = True) -> JudgeCalibration:
    """Judge every labelled pair in both orders and measure agreement and biases (see the module doc);
    with `canaries`, also the null and padded canaries against the human picks (4n more verdicts).

    The human pick is always shown first in the forward order; `position_swap` shows it second too,
    so a judge that likes the first slot cannot score agreement by it. A judge that fails raises.
    """
    pairs = labelled.pairs
    n = len(pairs)
    items = [JudgeItem(p.prompt, p.chosen, p.rejected, _no_instructions(p.prompt)) for p in pairs]
    canary_items = _canary_items(pairs) if canaries else {}
    tokens_before = getattr(judge, "tokens_used", None)
    started = time.monotonic()
    # one batch of 2n (+ 4n canary) presentations: an LLM judge runs them concurrently
    all_swapped = position_swap(judge, items + [i for group in canary_items.values() for i in group])
    seconds = time.monotonic() - started
    tokens_after = getattr(judge, "tokens_used", None)
    swap = _slice_swap(all_swapped, 0, n)
    canary_swaps = {name: _slice_swap(all_swapped, n * (k + 1), n * (k + 2)) for k, name in enumerate(canary_items)}

    prefer_chosen = [2.0 - v for v in swap.verdicts]  # 1 chosen, 0.5 tie or flip, 0 rejected
    raw = swap.forward + [3.0 - s for s in swap.swapped]  # as the judge answered, position by position
    decisive = [v for v in raw if v != 1.5]
    xs, judge_pref, longer_pref, human_longer = [], [], [], []
    per_pair = []
    for k, (p, q, f, s) in enumerate(zip(pairs, prefer_chosen, swap.forward, swap.swapped)):
        lc, lr = len(p.chosen), len(p.rejected)
        per_pair.append({"file": p.file, "row": p.row, "chosen_chars": lc, "rejected_chars": lr,
                         "forward": f, "swapped": s, "prefer_chosen": q}
                        | {f"canary_{name}": {"forward": cs.forward[k], "swapped": cs.swapped[k]}
                           for name, cs in canary_swaps.items()})
        if lc == lr:
            continue
        xs.append(math.log2(max(lc, 1) / max(lr, 1)))
        judge_pref.append(q)
        longer_pref.append(q if lc > lr else 1 - q)
        human_longer.append(1.0 if lc > lr else 0.0)

    metrics: dict[str, float] = {}
    metrics |= _pct("agreement_pct", _share(prefer_chosen), n)
    metrics |= _pct("position_flip_pct", swap.flip_rate, n)
    metrics |= _pct("first_slot_pct", swap.first_position_rate, len(decisive))
    metrics |= _pct("tie_pct", _share([float(v == 1.5) for v in raw]), len(raw))
    metrics |= _pct("longer_pick_pct", _share(longer_pref), len(longer_pref))
    metrics |= _pct("human_longer_pick_pct", _share(human_longer), len(human_longer))
    metrics["judge/longer_pick_excess_pct"] = metrics["judge/longer_pick_pct"] - metrics["judge/human_longer_pick_pct"]
    humans = [1.0] * len(xs)  # the human pick is always `chosen`
    for name, prefs in (("length_slope", judge_pref), ("human_length_slope", humans)):
        low, high = _bootstrap_slope(xs, prefs, n_bootstrap, seed)
        metrics |= {f"judge/{name}": length_slope(xs, prefs), f"judge/{name}_ci_low": low,
                    f"judge/{name}_ci_high": high}
    for name, cs in canary_swaps.items():
        metrics |= _pct(f"canary_{name}_win_pct", _share(canary_win_share(cs.forward, cs.swapped)), n)
    if canary_swaps:
        metrics["judge/canary_flag"] = canary_flag(metrics)
    tokens = (tokens_after - tokens_before) if tokens_before is not None and tokens_after is not None else float("nan")
    metrics |= {"judge/n_pairs": float(n), "judge/calls": float(2 * len(all_swapped.forward)),
                "judge/tokens": float(tokens), "judge/seconds": seconds}
    return JudgeCalibration(judge=str(getattr(judge, "name", type(judge).__name__)), fingerprint=judge_fingerprint(judge),
                            labels=labelled.source, metrics=metrics, per_pair=per_pair, dropped=dict(labelled.dropped))


def _slice_swap(swap, start: int, stop: int):
    """The items start:stop of a batched position swap (verdicts, both orders), as their own PositionSwap."""
    from evals.judges import PositionSwap

    forward, swapped = swap.forward[start:stop], swap.swapped[start:stop]
    raw = forward + [3.0 - s for s in swapped]
    decisive = [v for v in raw if v != 1.5]
    return PositionSwap(verdicts=swap.verdicts[start:stop], forward=forward, swapped=swapped,
                        flip_rate=sum(f != s for f, s in zip(forward, swapped)) / max(len(forward), 1),
                        first_position_rate=sum(v < 1.5 for v in decisive) / len(decisive) if decisive else float("nan"))


# ---------------------------------------------------------------- storage (MLflow, through harness.tracking)


def record_calibration(calibration: JudgeCalibration, output_dir: Path, *, tracking_uri: str | None = None,
                       spec: Any = None, limit: int | None = None) -> str:
    """One FINISHED run in the `judge-calibration` experiment, tagged with the judge's key; returns its id."""
    from harness.tracking import Tracker, flatten

    tracker = Tracker(Path(output_dir), CALIBRATION_EXPERIMENT, tracking_uri=tracking_uri)
    run_id = tracker.start_run(f"{calibration.judge}-{calibration.key[:8]}", tags={
        "harness.judge_key": calibration.key, "harness.judge_fingerprint": calibration.fingerprint,
        "harness.judge_name": calibration.judge, "harness.labels": calibration.labels})
    status = "FAILED"
    try:
        if spec is not None:
            dumped = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else spec
            tracker.log_params(flatten({"judge": dumped if isinstance(dumped, dict) else {"name": dumped}}))
        tracker.log_params({"labels.source": calibration.labels, "labels.limit": limit,
                            **{f"labels.dropped.{k}": v for k, v in calibration.dropped.items()}})
        tracker.log_metrics(calibration.metrics)
        calibration.run_id = run_id
        tracker.log_json(calibration.to_dict(), "judge_calibration.json")
        status = "FINISHED"
    finally:
        tracker.end_run(status)
    return run_id


@dataclass
class StoredCalibration:
    run_id: str
    fingerprint: str
    labels: str
    metrics: dict[str, float]  # judge/* only


def stored_calibration(tracker, fingerprint: str) -> StoredCalibration | None:
    """The newest finished calibration of the judge with this fingerprint in the tracking store of
    `tracker` (any harness.tracking.Tracker on it), or None: the judge is uncalibrated."""
    run = tracker.latest_finished_run(CALIBRATION_EXPERIMENT, {"harness.judge_key": judge_key(fingerprint)})
    if run is None or run.data.tags.get("harness.judge_fingerprint") != fingerprint:
        return None
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("judge/")}
    return StoredCalibration(run.info.run_id, fingerprint, run.data.tags.get("harness.labels", ""), metrics)


def cell_judge_calibration(tracker, judge_spec: Any, cache_dir: Path | None) -> tuple[dict[str, float], dict[str, str]]:
    """For a cell judged by `judge_spec` (eval.judge): the stored calibration's `judge/*` metrics ({} when
    the judge is uncalibrated, so a gate rule on them fails closed) and what the cell records about it
    (tags, which the report reads back)."""
    fingerprint = judge_fingerprint(build_judge(judge_spec, cache_dir=cache_dir))
    stored = stored_calibration(tracker, fingerprint)
    info = {"fingerprint": fingerprint, "judge_key": judge_key(fingerprint),
            "status": "calibrated" if stored else "uncalibrated"}
    if stored:
        info |= {"run_id": stored.run_id, "labels": stored.labels}
    return (stored.metrics if stored else {}), info


def calibration_tags(info: Mapping[str, str]) -> dict[str, str]:
    return {f"harness.judge_calibration.{k}": str(v) for k, v in info.items()}


def calibration_info_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    prefix = "harness.judge_calibration."
    return {k[len(prefix):]: v for k, v in tags.items() if k.startswith(prefix)}


def calibration_summary(metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """The figures as (label, text) lines, for the CLI and the cell report's box."""
    def pct(key: str) -> str:
        v = metrics.get(key)
        if v is None or not math.isfinite(v):
            return "n/a"
        lo, hi = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        ci = f" [{lo:.1f}, {hi:.1f}]" if lo is not None and hi is not None and math.isfinite(lo) else ""
        return f"{v:.1f}%{ci}"

    def num(key: str, unit: str = "") -> str:
        v = metrics.get(key)
        return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}{unit}"

    excess = metrics.get("judge/longer_pick_excess_pct")
    return [
        ("agreement with humans (95% CI)", pct("judge/agreement_pct")),
        ("position flips", pct("judge/position_flip_pct")),
        ("first slot picked", pct("judge/first_slot_pct")),
        ("longer answer picked", f"{pct('judge/longer_pick_pct')} vs humans {pct('judge/human_longer_pick_pct')}"
                                 + (f" ({excess:+.1f} points)" if excess is not None and math.isfinite(excess) else "")),
        ("length slope / doubling", f"{num('judge/length_slope')} (humans {num('judge/human_length_slope')})"),
        ("ties", pct("judge/tie_pct")),
        *_canary_lines(metrics, pct),
        ("cost", f"{num('judge/calls')} calls, {num('judge/tokens')} tokens, {num('judge/seconds', ' s')}"
                 f" for {num('judge/n_pairs')} pairs"),
    ]


@register_eval("judge", owns=("judge/",))
def judge_calibration_of_cell(ctx: EvalContext) -> EvalOutput:
    """The cell's judge against human labels, as stored by `harness judge calibrate` (the pipeline binds
    the lookup to its tracker). Uncalibrated: no metrics, so a rule on judge/* fails closed, saying how."""
    found, info = ctx.calibration() if ctx.calibration else ({}, {})
    return EvalOutput(found, extras={"judge_calibration": info}, tags=calibration_tags(info))


def _canary_lines(metrics: Mapping[str, float], pct) -> list[tuple[str, str]]:
    flag = metrics.get("judge/canary_flag")
    if flag is None or not math.isfinite(flag):
        return [("canaries", "not measured (calibrated before canaries existed, or with --no-canaries)")]
    return [
        (f"canary: constant answer {NULL_ANSWER!r} wins",
         f"{pct('judge/canary_null_win_pct')} (flag above {CANARY_NULL_MAX_WIN_PCT:g}%)"),
        ("canary: reference padded to 2x length wins",
         f"{pct('judge/canary_padded_win_pct')} (flag above {CANARY_PADDED_MAX_WIN_PCT:g}%)"),
        ("canary flag", "FLAGGED: the judge rewards content-free or padded answers" if flag else "not flagged"),
    ]

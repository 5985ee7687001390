"""One experiment cell end to end: data -> train -> generate -> evals -> gate -> promote -> report.

Every stage returns a value; an eval that raises is recorded under `errors` and fails the
gate (fail-closed). A crash outside the evals ends the MLflow run as FAILED, never FINISHED.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from harness.atomic_io import read_json, write_json_atomic
from harness.config import ExperimentConfig
from harness.errors import HarnessInputError
from harness.gate import GateDecision, effective_rules, gate, rules_vs_start
from harness.promotion import decide_and_promote

console = Console(stderr=True)


@dataclass
class ExperimentResult:
    run_id: str
    cell: str
    verdict: str
    metrics: dict[str, float]
    decision: GateDecision
    report: str
    errors: dict[str, str] = field(default_factory=dict)
    champion_version: str | None = None
    policy_fingerprint: str = ""
    adapter_dir: Path | None = None
    policy: Any = field(default=None, repr=False)  # the trained PEFT model (iterative rounds merge it)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cell": self.cell, "verdict": self.verdict, "metrics": self.metrics,
                "checks": self.decision.to_dict()["checks"], "report": self.report, "errors": self.errors,
                "champion_version": self.champion_version}


def _stage(name: str) -> None:
    console.print(f"[bold cyan]>[/] {name}")


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise HarnessInputError(f"output_dir: {path} is not writable ({exc.strerror or exc})") from None


def _adapter_fingerprint(adapter_dir: Path, base_fingerprint: str) -> str:
    h = hashlib.sha256(base_fingerprint.encode())
    for f in sorted(adapter_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def reference_baseline(metrics: dict[str, float], reference_domain: dict[str, float]) -> dict[str, float]:
    """The reference measured against itself: what every 'vs reference' rule compares to."""
    base = {"winrate/win_rate_pct": 50.0, "winrate/lc_win_rate_pct": 50.0, "winrate/raw_minus_lc_pct": 0.0,
            "winrate/verbosity_alarm": 0.0,
            "kl/seq_kl_k1": 0.0, "kl/seq_kl_k3": 0.0, "kl/token_kl_k1": 0.0, "length/ratio_tokens": 1.0,
            "length/ratio_chars": 1.0, "chosen_logp/chosen_delta": 0.0, "chosen_logp/rejected_delta": 0.0,
            "chosen_logp/margin_delta": 0.0}
    if "length/reference_mean_tokens" in metrics:
        base["length/policy_mean_tokens"] = metrics["length/reference_mean_tokens"]
    base.update(reference_domain)
    return base


def start_values(metrics: dict[str, float], start_domain: dict[str, float]) -> dict[str, float]:
    """The starting model measured against itself, for rules `against: start` in rounds >= 2: the
    reference baseline's neutral values under both names (`winrate/...` and `winrate_vs_start/...`),
    with the start's own mean length and domain results."""
    from evals.vs_start import against_start

    neutral = reference_baseline({}, start_domain)
    out = neutral | against_start({k: v for k, v in neutral.items() if "/" in k})
    if "length_vs_start/reference_mean_tokens" in metrics:
        out["length/policy_mean_tokens"] = metrics["length_vs_start/reference_mean_tokens"]
        out["length_vs_start/policy_mean_tokens"] = metrics["length_vs_start/reference_mean_tokens"]
    return out


def run_experiment(config: ExperimentConfig, *, config_path: str = "", hooks: dict[str, Callable] | None = None,
                   extra_tags: dict[str, str] | None = None) -> ExperimentResult:
    """`hooks` lets tests inject faults through the public path: {"eval:kl": fn(metrics) -> metrics}
    may raise or return corrupted metrics; {"gate": fn(decision) -> decision}. With `iterations > 1`
    the experiment is a chain of rounds (harness.iterative) and the result an IterativeResult."""
    from harness.models import load_model
    from harness.preference_data import load_preference_data
    from harness.tracking import Tracker

    if config.iterations > 1:
        from harness.iterative import run_iterative

        return run_iterative(config, config_path=config_path, hooks=hooks, extra_tags=extra_tags)
    hooks = hooks or {}
    check_output_dir(config.output_dir)
    cell = config.cell_key()
    random.seed(config.seed)

    _stage(f"loading {config.model.name}")
    loaded = load_model(config.model.name, config.resolved_cache_dir, trust_remote_code=config.model.trust_remote_code,
                        allow_pickle_weights=config.model.allow_pickle_weights, dtype=config.model.dtype)

    _stage("preference data")
    data = load_preference_data(config, loaded.model, loaded.tokenizer, loaded.fingerprint)
    console.print(f"  {len(data.train)} training pairs, {len(data.heldout)} held out, dropped {dict(data.dropped) or 'none'}")

    tracker = Tracker(config.output_dir, config.name, tracking_uri=config.registry.tracking_uri)
    tags = {"harness.cell": cell, "harness.variant": config.variant, "harness.config_path": config_path,
            **(extra_tags or {})}
    return recorded_cell_run(tracker, config, loaded, data, cell, tags, hooks)


def recorded_cell_run(tracker, config: ExperimentConfig, loaded, data, cell: str, tags: dict[str, str],
                      hooks: dict[str, Callable], *, start=None, lineage: tuple[Path, ...] = ()) -> ExperimentResult:
    """One MLflow run around train -> evaluate -> decide. A crash ends the run FAILED with the error in
    its tags, never FINISHED."""
    from harness.tracking import flatten

    tracker.start_run(cell, tags={**tags, "harness.status": "running"})
    with ended_as_finished_or_failed(tracker):
        tracker.log_params(flatten(config.model_dump(mode="json")))
        tracker.log_params({f"data.stats.{k}": v for k, v in flatten(data.stats()).items()})
        tracker.log_metrics({f"data/dropped_{k}": v for k, v in data.dropped.items()} | {"data/pairs": len(data.train)})
        return _train_evaluate_decide(config, loaded, data, tracker, cell, config.output_dir / "cells" / cell, hooks,
                                      start=start, lineage=lineage)


@contextlib.contextmanager
def ended_as_finished_or_failed(tracker):
    """The tracker's current run ends FINISHED when the block completes, FAILED (the error in its
    tags, verdict BLOCK) when it raises - a crash is never recorded as a pass."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except BaseException as exc:
        tracker.set_tags({"harness.status": "failed", "harness.verdict": "BLOCK",
                          "harness.error": f"{type(exc).__name__}: {exc}"[:1000]})
        raise
    finally:
        tracker.end_run(status)


def _train_evaluate_decide(config, loaded, data, tracker, cell, cell_dir, hooks, *, start=None,
                           lineage: tuple[Path, ...] = ()) -> ExperimentResult:
    """`loaded` is what this cell trains on and is measured against (TRL's reference: the base with
    adapters disabled). In iterative rounds >= 2 that is round k-1's merged checkpoint, `start` is
    the model the experiment started from (also measured against), and `lineage` holds the earlier
    rounds' adapters, which the registered checkpoint needs to be rebuilt on the start model."""
    from evals.catalog import known_metrics
    from evals.generation import DecodingSettings, generate
    from harness.training import train_cell
    from harness.verifiable_prompts import make_prompts

    model, tok, cache_dir = loaded.model, loaded.tokenizer, config.resolved_cache_dir
    e = config.eval
    eval_prompts = make_prompts(e.n_prompts, config.seed, split="eval")
    prompt_texts = [p.text for p in eval_prompts]
    greedy = DecodingSettings(max_new_tokens=e.max_new_tokens, temperature=0.0, seed=config.seed)

    _stage("reference generations (cached by content, shared by every cell on this reference)")
    reference_out = generate(model, tok, prompt_texts, greedy, model_fingerprint=loaded.fingerprint,
                             cache_dir=cache_dir, batch_size=e.batch_size, label="reference")

    _stage(f"training {config.variant} (beta={config.beta:g}, {config.training.max_steps} steps)")
    trained = train_cell(config, model, tok, data.train, cell_dir, base_fingerprint=loaded.fingerprint)
    tracker.log_history(trained.history)
    tracker.log_params({f"trl.{k}": v for k, v in trained.trl_params.items()})
    tracker.log_metrics({"train/seconds": trained.seconds})
    policy = trained.model
    policy_fp = _adapter_fingerprint(trained.adapter_dir, loaded.fingerprint)

    _stage("policy generations")
    policy_out = generate(policy, tok, prompt_texts, greedy, model_fingerprint=policy_fp, cache_dir=cache_dir,
                          batch_size=e.batch_size, label="policy")

    metrics: dict[str, float] = {}
    errors: dict[str, str] = {}
    verdicts: list[float] = []
    reference_domain: dict[str, float] = {}
    start_domain: dict[str, float] = {}

    def run_eval(name: str, fn: Callable[[], dict[str, float]]) -> None:
        _stage(f"eval: {name}")
        try:
            produced = fn()
            if f"eval:{name}" in hooks:  # fault injection: a hook may raise or corrupt the metrics
                produced = hooks[f"eval:{name}"](produced)
            metrics.update(produced)
        except Exception as exc:  # recorded, and the gate fails closed on it
            errors[name] = f"{type(exc).__name__}: {exc}"
            console.print(f"  [red]eval {name} failed:[/] {errors[name]}")
            (cell_dir / "errors").mkdir(parents=True, exist_ok=True)
            (cell_dir / "errors" / f"{name}.txt").write_text(traceback.format_exc())

    def winrate_against(baseline_out) -> tuple[dict[str, float], list[float]]:
        from evals.judges import JudgeItem
        from evals.pairwise import winrate_eval

        items = [JudgeItem(p.text, r.text, o.text, p) for p, r, o in zip(eval_prompts, baseline_out, policy_out)]
        return winrate_eval(items, e.judge, n_bootstrap=e.n_bootstrap, seed=config.seed,
                            cache_dir=cache_dir, verbosity_gap_pct=e.verbosity_gap_pct)

    def winrate() -> dict[str, float]:
        summary, v = winrate_against(reference_out)
        verdicts.extend(v)
        return summary

    @functools.lru_cache(maxsize=1)  # kl and kl_vs_start score the same samples: sample and score once
    def kl_samples():
        from evals.generation import batch_completion_logprobs

        settings = DecodingSettings(max_new_tokens=e.kl.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                                    seed=config.seed + 1)
        kl_prompts = prompt_texts[: e.kl.n_prompts]
        samples = generate(policy, tok, kl_prompts, settings, model_fingerprint=policy_fp, cache_dir=cache_dir,
                           batch_size=e.batch_size, label="KL samples")
        ids = [s.token_ids for s in samples]
        return kl_prompts, ids, batch_completion_logprobs(policy, tok, kl_prompts, ids, e.batch_size)

    def kl() -> dict[str, float]:
        from evals.generation import batch_completion_logprobs
        from evals.kl import kl_from_logprobs

        kl_prompts, ids, lp_policy = kl_samples()
        with policy.disable_adapter():
            lp_ref = batch_completion_logprobs(policy, tok, kl_prompts, ids, e.batch_size)
        return kl_from_logprobs(lp_policy, lp_ref).summary()

    # iterative rounds >= 2: the same measurements against the model the experiment started from
    def start_out():  # cached by content: the first call generates, later ones read
        return generate(start.model, tok, prompt_texts, greedy, model_fingerprint=start.fingerprint,
                        cache_dir=cache_dir, batch_size=e.batch_size, label="starting model")

    def winrate_vs_start() -> dict[str, float]:
        from evals.vs_start import against_start

        return against_start(winrate_against(start_out())[0])

    def length_vs_start() -> dict[str, float]:
        from evals.length import length_summary
        from evals.vs_start import against_start

        base_out = start_out()
        return against_start(length_summary([o.n_tokens for o in policy_out], [r.n_tokens for r in base_out],
                                            [len(o.text) for o in policy_out], [len(r.text) for r in base_out]))

    def kl_vs_start() -> dict[str, float]:  # the same policy samples, scored by the starting model
        from evals.generation import batch_completion_logprobs
        from evals.kl import kl_from_logprobs
        from evals.vs_start import against_start

        kl_prompts, ids, lp_policy = kl_samples()
        lp_start = batch_completion_logprobs(start.model, tok, kl_prompts, ids, e.batch_size)
        return against_start(kl_from_logprobs(lp_policy, lp_start).summary())

    def length() -> dict[str, float]:
        from evals.length import length_summary

        return length_summary([o.n_tokens for o in policy_out], [r.n_tokens for r in reference_out],
                              [len(o.text) for o in policy_out], [len(r.text) for r in reference_out])

    def chosen_logp() -> dict[str, float]:
        from evals.chosen_drop import chosen_drop_summary, pair_logps

        if not data.heldout:
            raise ValueError("no held-out pairs (data.eval_fraction is 0 or the data is too small)")
        pol = pair_logps(policy, tok, data.heldout)
        with policy.disable_adapter():
            ref = pair_logps(policy, tok, data.heldout)
        return chosen_drop_summary(pol, ref)

    def domain() -> dict[str, float]:
        from evals.domain import mcnemar_paired, run_domain_evals

        if not e.domain_tasks:
            return {}
        dcache = cache_dir / "lm_eval"
        include = []
        if "ifeval_local" in e.domain_tasks:  # lm-eval's ifeval over a local file (evals.ifeval_offline)
            from evals.ifeval_offline import prepare_ifeval_task

            include.append(prepare_ifeval_task(dcache, e.ifeval.data_file, max_gen_toks=e.ifeval.max_gen_toks))
        pol = run_domain_evals(policy, tok, e.domain_tasks, cache_dir=dcache, limit=e.domain_limit, seed=config.seed,
                               include_paths=include)

        def baseline_results(fingerprint: str, measure) -> dict:
            # a base model's results depend only on its weights and the task settings: shared by every cell
            key = hashlib.sha256(json.dumps([fingerprint, e.domain_tasks, e.domain_limit, config.seed,
                                             e.model_dump(mode="json").get("ifeval")], sort_keys=True)
                                 .encode()).hexdigest()[:24]
            path = cache_dir / "reference_domain" / f"{key}.json"
            cached = read_json(path)
            if cached is None:
                measured = measure()
                cached = {"summary": measured.summary, "per_item": measured.per_item}
                write_json_atomic(path, cached)
            if include:
                from evals.ifeval_offline import add_acc_alias

                cached["summary"] = add_acc_alias(cached["summary"])
            return cached

        def measure_reference():
            with policy.disable_adapter():
                return run_domain_evals(policy, tok, e.domain_tasks, cache_dir=dcache, limit=e.domain_limit,
                                        seed=config.seed, include_paths=include)

        ref = baseline_results(loaded.fingerprint, measure_reference)
        start_results = None
        if start is not None:
            start_results = baseline_results(start.fingerprint, lambda: run_domain_evals(
                start.model, tok, e.domain_tasks, cache_dir=dcache, limit=e.domain_limit, seed=config.seed,
                include_paths=include))
            start_domain.update(start_results["summary"])
        if include:
            from evals.ifeval_offline import add_acc_alias

            pol.summary = add_acc_alias(pol.summary)
        out = dict(pol.summary)
        reference_domain.update(ref["summary"])
        for task, items in pol.per_item.items():
            test = mcnemar_paired(items, ref["per_item"].get(task, []))
            out[f"{task}/acc_delta"] = test["delta"]  # per_item is keyed by eval name, e.g. domain_arith_mc
            out[f"{task}/acc_delta_pvalue"] = test["p_value"]
            if start_results is not None:  # the paired test a rule `against: start` reads (harness.gate)
                test = mcnemar_paired(items, start_results["per_item"].get(task, []))
                out[f"{task}/acc_delta_vs_start"] = test["delta"]
                out[f"{task}/acc_delta_vs_start_pvalue"] = test["p_value"]
        return out

    def diversity() -> dict[str, float]:  # evals.diversity: k policy samples per prompt at temperature 1
        from evals.diversity import diversity_summary, group_samples

        d = e.diversity
        settings = DecodingSettings(max_new_tokens=d.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                                    seed=config.seed + 2, n_samples=d.samples_per_prompt)
        samples = generate(policy, tok, prompt_texts[: d.n_prompts], settings, model_fingerprint=policy_fp,
                           cache_dir=cache_dir, batch_size=e.batch_size, label="diversity samples")
        return diversity_summary(group_samples([s.text for s in samples], d.samples_per_prompt),
                                 collapse_threshold=d.collapse_threshold)

    def offpolicy() -> dict[str, float]:  # evals.offpolicy_gap: the training pairs vs the reference's own samples
        from evals.offpolicy_gap import offpolicy_gap

        with policy.disable_adapter():
            return offpolicy_gap(policy, tok, data.train, model_fingerprint=loaded.fingerprint, cache_dir=cache_dir,
                                 seed=config.seed, temperature=config.data.sample_temperature)

    judge_info: dict[str, str] = {}

    def judge_calibration() -> dict[str, float]:  # evals.judge_calibration: the judge against human labels
        from evals.judge_calibration import calibration_tags, cell_judge_calibration

        found, info = cell_judge_calibration(tracker, e.judge, cache_dir)
        judge_info.update(info)
        tracker.set_tags(calibration_tags(info))
        return found  # {} when uncalibrated: a gate rule on judge/* then fails closed, saying how to calibrate

    run_eval("winrate", winrate)
    run_eval("kl", kl)
    if start is not None:
        run_eval("winrate_vs_start", winrate_vs_start)
        run_eval("kl_vs_start", kl_vs_start)
        run_eval("length_vs_start", length_vs_start)
    if e.diversity.n_prompts > 0:
        run_eval("diversity", diversity)
    run_eval("length", length)
    run_eval("chosen_logp", chosen_logp)
    run_eval("domain", domain)
    run_eval("data", offpolicy)
    run_eval("judge", judge_calibration)
    tracker.log_metrics(metrics)

    _stage("gate")
    specs = known_metrics()
    reference = reference_baseline(metrics, reference_domain)
    # round 1 (and every single pass) starts from its reference, so the two baselines coincide
    start_baseline = reference if start is None else start_values(metrics, start_domain)
    tracker.log_metrics({f"reference/{k}": v for k, v in reference.items()})
    if start is not None:
        tracker.log_metrics({f"start/{k}": v for k, v in start_baseline.items()})
    tracker.log_json(redacted_config(config), "config.json")
    tracker.log_json(errors, "eval_errors.json")
    rules = effective_rules(config.gate, e.domain_tasks)
    if start is not None and config.iteration.gate_vs_start:
        rules += rules_vs_start(rules)
    # the registered checkpoint carries its config next to the adapter and tokenizer
    (trained.adapter_dir / "harness_config.json").write_text(json.dumps(redacted_config(config), indent=1))
    tracker.log_artifact(trained.adapter_dir, "checkpoint")
    if lineage:  # a later round's adapter sits on the earlier rounds' merged weights: ship them along
        from harness.models import write_adapter_stack

        write_adapter_stack(trained.adapter_dir, config.model.name, lineage)
        for i, earlier in enumerate(lineage, start=1):
            tracker.log_artifact(earlier, f"checkpoint/base_adapters/round-{i}")
        tracker.log_artifact(trained.adapter_dir / "adapter_stack.json", "checkpoint")

    def decide(champion_metrics: dict | None) -> GateDecision:
        decision = gate(metrics, {"reference": reference, "start": start_baseline, "champion": champion_metrics},
                        rules, specs=specs, errors=errors,
                        allow_promote_without_rules=config.gate.allow_promote_without_rules)
        return hooks["gate"](decision) if "gate" in hooks else decision

    # a later round's checkpoint is an adapter stack: say so on the registered version
    stack_tags = {"harness.adapter_stack": "true", "harness.rounds_in_stack": str(len(lineage) + 1)} if lineage else {}
    outcome = decide_and_promote(tracker, config.registry, decide, cell=cell, version_tags=stack_tags)
    decision, version = outcome.decision, outcome.version
    tracker.set_tags({"harness.status": "finished"})
    if version:
        console.print(f"  promoted: {config.registry.model_name} version {version} is now '{config.registry.alias}'")

    _stage("report")
    samples = [{"prompt": p.text, "reference": r.text, "policy": o.text, "verdict": v,
                "reference_tokens": r.n_tokens, "policy_tokens": o.n_tokens}
               for p, r, o, v in zip(eval_prompts, reference_out, policy_out, verdicts or [None] * len(eval_prompts))]
    result_doc = {
        "experiment": config.name, "run_id": tracker.run_id, "cell": cell, "verdict": decision.verdict,
        "config": redacted_config(config), "metrics": metrics,
        "metric_specs": {k: {"higher_is_better": s.higher_is_better, "unit": s.unit, "description": s.description}
                         for k, s in specs.items()},
        "checks": decision.to_dict()["checks"], "training": {"history": trained.history, "seconds": trained.seconds},
        "samples": samples, "data": data.stats(), "errors": errors, "judge_calibration": judge_info,
    }
    _write_generations(cell_dir / "generations.jsonl", samples)
    tracker.log_artifact(cell_dir / "generations.jsonl")
    from reports.experiment import render_experiment_report

    def render() -> Path:
        path = render_experiment_report(result_doc, cell_dir / "report.html")
        tracker.log_artifact(path)
        return path

    report = report_or_recorded_failure(tracker, render, lambda msg: console.print(f"  [red]{msg}[/]"))
    return ExperimentResult(run_id=tracker.run_id, cell=cell, verdict=decision.verdict, metrics=metrics,
                            decision=decision, report=report, errors=errors, champion_version=version,
                            policy_fingerprint=policy_fp, adapter_dir=trained.adapter_dir, policy=policy)


def report_or_recorded_failure(tracker, render: Callable[[], Path], say: Callable[[str], None]) -> str:
    """The report's path, or "" with the error in the run's tags. The decision is made and recorded by
    then; a report that cannot render is a broken view, not a failed experiment or sweep (failing here
    would mark a promoted run FAILED)."""
    try:
        return str(render().resolve())
    except Exception as exc:
        tracker.set_tags({"harness.report_error": f"{type(exc).__name__}: {exc}"[:1000]})
        say(f"report failed: {type(exc).__name__}: {exc}")
        return ""


def redacted_config(config: ExperimentConfig) -> dict:
    from harness.tracking import flatten, redact

    flat = redact(flatten(config.model_dump(mode="json")))
    tree: dict = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _write_generations(path: Path, samples: list[dict]) -> None:
    from harness.atomic_io import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(s) + "\n" for s in samples))

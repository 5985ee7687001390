"""Domain evaluations through lm-evaluation-harness, on the in-memory model, offline.

Built-in tasks (definitions in `evals/tasks/*.yaml`, data from `evals/domain_data.py`):

    harness_arith_mc    two-digit arithmetic, 4-way multiple choice       -> domain_arith_mc/acc
    harness_facts_mc    capitals / element symbols / planets / SI units   -> domain_facts_mc/acc
    harness_format_gen  verifiable format instructions, rule-checked      -> domain_format_gen/acc

Any other lm-eval task name (`hellaswag`, `mmlu`, ...) passes through unchanged, reported as
`domain_<task>/<metric>` (a filter other than `none` joins the metric name:
`exact_match_strict-match`); those read the Hub as lm-eval normally does. Task folders of the
caller's go in `include_paths`; the same overlay trick (below) points a stock task at a local
file, e.g. lm-eval's `ifeval` at a local `input_data.jsonl.gz`:

    include: <site-packages>/lm_eval/tasks/ifeval/ifeval.yaml
    task: ifeval_local
    dataset_path: json
    dataset_name: null
    dataset_kwargs: {data_files: {train: /path/to/input_data.jsonl.gz}}

(ifeval also needs `langdetect`, `immutabledict` and NLTK's `punkt_tab` data on NLTK_DATA.)

How a task YAML finds its data file
-----------------------------------
The JSONL files are generated at run time under `cache_dir`, so their absolute path cannot be
written into the YAMLs shipped in `evals/tasks/`. lm-eval 0.4.13 offers no variable
substitution in YAML and no per-task override by name: a dict passed in `tasks=` is taken as a
complete inline config (`TaskIndex.entry_from_config`), not merged with the registered YAML.
What its YAML loader does support is `include:` with an absolute path, with the including
file's keys winning (`lm_eval.tasks._yaml_loader.load_yaml`). So each run writes, next to the
data, a two-key overlay per built-in task:

    <cache_dir>/domain_evals/tasks/harness_arith_mc.yaml
        include: /…/evals/tasks/harness_arith_mc.yaml          # the real task definition
        dataset_kwargs: {data_files: {test: /…/arith_mc.jsonl}, cache_dir: /…/hf_datasets}

and builds `TaskManager(include_path=<that dir>)`. The task definition (prompt, choices,
metrics, `!function format_checks.process_results`, which resolves next to the included YAML)
stays entirely in `evals/tasks/`; the overlay carries only the path. The `data_files` in the
shipped YAMLs is a relative placeholder, so `lm_eval --include_path evals/tasks` still works
when run from a directory holding the files that `domain_data.write_task_data` writes. Both
the data and the overlays are written atomically and only when their bytes change.

Offline and caching
-------------------
When every task resolves from the built-ins or `include_paths` (so lm-eval's own task index is
not needed), the run forces Hub offline mode (env vars plus the already-imported
`huggingface_hub` / `datasets` constants, restored afterwards); the tasks read local JSONL and
the model is passed in memory. `offline=True/False` overrides that choice. lm-eval's response cache (`use_cache`) and request cache are not
used: their keys carry no model identity, so a policy and its reference would share entries.

Per-item results
----------------
`DomainResult.per_item[eval_name]` is the 0/1 correctness per document in doc-id order (from
lm-eval's logged samples) and `doc_ids[eval_name]` the matching ids, so two models evaluated
on the same tasks and `limit` can be compared pairwise with `mcnemar_paired`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import yaml

from evals.context import EvalContext, EvalOutput
from evals.domain_data import write_task_data
from evals.metrics import METRICS, register_metric
from evals.paired_accuracy import paired_summary
from evals.registry import register_eval
from evals.sequential import CONTINUE, PLAN_FIRST_ITEMS, recorded_plan, sequence_metrics, tracked_metrics
from harness.atomic_io import read_json, write_bytes_atomic, write_json_atomic

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASK_PREFIX = "harness_"
EVAL_PREFIX = "domain_"

# lm-eval task name -> data key in evals.domain_data
BUILTIN_TASKS = {
    "harness_arith_mc": "arith_mc",
    "harness_facts_mc": "facts_mc",
    "harness_format_gen": "format_gen",
}
_DESCRIPTIONS = {
    "harness_arith_mc": "two-digit arithmetic multiple choice (lm-eval loglikelihood), fraction correct",
    "harness_facts_mc": "general-knowledge multiple choice (lm-eval loglikelihood), fraction correct",
    "harness_format_gen": "format-instruction following (greedy generation, rule-checked), fraction compliant",
}
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def eval_name(task: str) -> str:
    """lm-eval task name -> eval prefix of the flat summary: `harness_arith_mc` -> `domain_arith_mc`."""
    short = task[len(TASK_PREFIX):] if task.startswith(TASK_PREFIX) else task
    return EVAL_PREFIX + short


for _task, _desc in _DESCRIPTIONS.items():
    _key = f"{eval_name(_task)}/acc"
    if _key not in METRICS:  # a module reload must not register twice
        register_metric(_key, higher_is_better=True, unit="fraction", description=_desc)


@dataclass
class DomainResult:
    summary: dict[str, float]  # "domain_<task>/<metric>" and "..._stderr"
    per_item: dict[str, list[float]]  # eval name -> per-document score in doc-id order
    doc_ids: dict[str, list[int]] = field(default_factory=dict)  # eval name -> doc ids, same order
    tasks: list[str] = field(default_factory=list)  # lm-eval task names as run


def resolve_task(name: str) -> str:
    """Accept the short names too: `arith_mc` -> `harness_arith_mc`; anything else unchanged."""
    if name not in BUILTIN_TASKS and TASK_PREFIX + name in BUILTIN_TASKS:
        return TASK_PREFIX + name
    return name


def prepare_tasks(cache_dir: Path) -> Path:
    """Write the data files and the overlay YAMLs under `cache_dir`; returns the overlay dir."""
    root = Path(cache_dir).resolve() / "domain_evals"
    paths = write_task_data(root / "data")
    overlay_dir = root / "tasks"
    for task, data_key in BUILTIN_TASKS.items():
        overlay = {
            "include": str(TASKS_DIR / f"{task}.yaml"),
            "dataset_kwargs": {
                "data_files": {"test": str(paths[data_key])},
                "cache_dir": str(root / "hf_datasets"),
            },
        }
        text = "# generated by evals.domain.prepare_tasks: the task definition is the included file\n"
        text += yaml.safe_dump(overlay, sort_keys=False)
        write_bytes_atomic(overlay_dir / f"{task}.yaml", text.encode("utf-8"), skip_unchanged=True)
    return overlay_dir


@contextlib.contextmanager
def _hub_offline(enabled: bool = True) -> Iterator[None]:
    """Force Hugging Face Hub offline mode for the block, restoring the previous state after.

    The libraries read the env vars at import time, so the imported constants are patched too.
    """
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    targets = [(hub_constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
               (datasets.config, "HF_DATASETS_OFFLINE")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr in targets if hasattr(mod, attr)]
    try:
        for k in _OFFLINE_ENV:
            os.environ[k] = "1"
        for mod, attr, _ in saved:
            setattr(mod, attr, True)
        yield
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _preserve_rng() -> Iterator[None]:
    """simple_evaluate reseeds python/numpy/torch globally; give the caller its RNG state back."""
    import numpy as np
    import torch

    py, npy, pt = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(pt)


def run_domain_evals(
    model,
    tokenizer,
    tasks: list[str],
    *,
    cache_dir: Path,
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    apply_chat_template: bool = False,
    bootstrap_iters: int = 1000,
    include_paths: list[Path] | tuple[Path, ...] = (),
    offline: bool | None = None,
    samples: dict[str, list[int]] | None = None,
) -> DomainResult:
    """Evaluate an in-memory HF model on lm-eval tasks; see the module docstring.

    `limit` takes the first `limit` documents of each task (lm-eval semantics), so two runs
    with the same `limit` score the same items. `include_paths` adds task-YAML folders of the
    caller's (a name defined twice: the later folder wins, as in lm-eval). lm-eval's own task index (thousands of YAMLs, ~10 s
    to scan) is loaded only when a task is found in neither. `offline=None` forces Hub offline
    mode exactly when it is not loaded; True/False force it on/off. `samples` (instead of `limit`): the
    document ids to evaluate per task, as lm-eval takes them (a sequential eval's batch).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ValueError("no tasks given")
    task_names = [resolve_task(t) for t in tasks]
    overlay_dir = prepare_tasks(Path(cache_dir))
    paths = [str(overlay_dir), *(str(Path(p).resolve()) for p in include_paths)]
    task_manager = TaskManager(include_path=paths, include_defaults=False)
    needs_defaults = any(t not in task_manager.all_tasks for t in task_names)
    if needs_defaults:
        task_manager = TaskManager(include_path=paths, include_defaults=True)

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with _hub_offline(not needs_defaults if offline is None else offline), _preserve_rng():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=task_names,
                task_manager=task_manager,
                limit=limit,
                samples=samples,
                log_samples=True,
                use_cache=None,
                cache_requests=False,
                bootstrap_iters=bootstrap_iters,
                apply_chat_template=apply_chat_template,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
            )
    finally:
        model.train(was_training)
    if results is None:  # non-zero rank under a distributed launcher
        return DomainResult(summary={}, per_item={}, tasks=task_names)
    per_item, doc_ids = _per_item(results.get("samples") or {})
    return DomainResult(
        summary=_summary(results["results"]), per_item=per_item, doc_ids=doc_ids, tasks=task_names
    )


def _metric_name(metric: str, filt: str) -> str:
    """`acc`,`none` -> `acc`; `exact_match_stderr`,`strict-match` -> `exact_match_strict-match_stderr`."""
    if filt in ("none", ""):
        return metric
    if metric.endswith("_stderr"):
        return f"{metric[: -len('_stderr')]}_{filt}_stderr"
    return f"{metric}_{filt}"


def _summary(task_results: dict[str, dict[str, Any]]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for task, metrics in task_results.items():
        prefix = eval_name(task)
        for key, value in metrics.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # "alias", "N/A" stderrs, sample counts
            metric, filt = key.split(",", 1)
            summary[f"{prefix}/{_metric_name(metric, filt)}"] = float(value)
    return summary


def _per_item(samples: dict[str, list[dict]]) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Per-document scores: `acc` where the task has it, else its first scalar metric; one filter."""
    per_item: dict[str, list[float]] = {}
    doc_ids: dict[str, list[int]] = {}
    for task, rows in samples.items():
        if not rows:
            continue
        filters = [r.get("filter", "none") for r in rows]
        filt = "none" if "none" in filters else filters[0]
        rows = sorted((r for r in rows if r.get("filter", "none") == filt), key=lambda r: r["doc_id"])
        names = list(rows[0].get("metrics", []))
        metric = "acc" if "acc" in names else next(
            (m for m in names if _is_scalar(rows[0].get(m))), None
        )
        if metric is None:
            continue
        name = eval_name(task)
        per_item[name] = [float(r[metric]) for r in rows]
        doc_ids[name] = [int(r["doc_id"]) for r in rows]
    return per_item, doc_ids


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float))  # bool included; lists (ifeval's inst-level) are not


def _task_yaml(path: Path) -> dict:
    """A task YAML as a mapping, `!function` tags and all (they name code; only the keys are needed)."""

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_Loader) or {}
    parent = data.get("include")
    if isinstance(parent, str):  # a task inherits its parent's metrics and filters unless it overrides them
        base = _task_yaml(Path(path).parent / parent)
        data = base | {k: v for k, v in data.items() if k != "include"}
    return data


def declare_task_metrics(task: str, task_index: dict) -> list[str]:
    """Register the metrics an lm-eval task outside the harness's own declares, with the direction its
    YAML (or lm-eval's metric registry) states, so gate rules can name them: `domain_<task>/<metric>`,
    `<metric>_<filter>` for filtered tasks. Read from the task's YAML, never from its data (no download)."""
    from lm_eval.api.registry import is_higher_better

    entry = task_index.get(task)
    yaml_path = getattr(entry, "yaml_path", None) or (entry.get("yaml_path") if isinstance(entry, dict) else None)
    if not yaml_path or not Path(yaml_path).is_file():
        return []
    config = _task_yaml(Path(yaml_path))
    filters = [f.get("name", "none") for f in config.get("filter_list") or [] if isinstance(f, dict)] or ["none"]
    declared = []
    for item in config.get("metric_list") or []:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            continue
        direction = item.get("higher_is_better")
        if not isinstance(direction, bool):
            try:
                direction = is_higher_better(item["metric"])
            except Exception:
                direction = None  # no stated direction: usable with min/max, never with max_regression
        for filt in filters:
            key = f"{eval_name(task)}/{_metric_name(item['metric'], filt)}"
            if key not in METRICS:
                register_metric(key, higher_is_better=direction, unit="score",
                                description=f"lm-eval task {task}: {item['metric']} ({filt} filter)")
            declared.append(key)
    return declared


def baseline_key(fingerprint: str, eval_config, seed: int) -> str:
    """Cache key of a base model's domain-eval results: its content fingerprint, the tasks and their
    settings, and the IFEval data file by content (the same path can hold another version of the file)."""
    identity = [fingerprint, eval_config.domain_tasks, eval_config.domain_limit, seed,
                eval_config.model_dump(mode="json").get("ifeval")]
    data_file = eval_config.ifeval.data_file
    if "ifeval_local" in eval_config.domain_tasks and data_file is not None:
        identity.append(hashlib.sha256(Path(data_file).expanduser().read_bytes()).hexdigest())
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _task_setup(ctx: EvalContext) -> tuple[Path, list[Path]]:
    dcache = ctx.cache_dir / "lm_eval"
    include = []
    if "ifeval_local" in ctx.eval.domain_tasks:  # lm-eval's ifeval over a local file (evals.ifeval_offline)
        from evals.ifeval_offline import prepare_ifeval_task

        include.append(prepare_ifeval_task(dcache, ctx.eval.ifeval.data_file, max_gen_toks=ctx.eval.ifeval.max_gen_toks))
    return dcache, include


def _measured(ctx: EvalContext, model, fingerprint: str) -> dict:
    """A model's summary and per-item results, cached by content when it is a base model: the reference
    (or the start) is measured once and shared by every cell on it."""
    from evals.ifeval_offline import add_acc_alias

    dcache, include = _task_setup(ctx)
    e = ctx.eval
    path = ctx.cache_dir / "reference_domain" / f"{baseline_key(fingerprint, e, ctx.config.seed)}.json" if fingerprint else None
    cached = read_json(path) if path else None
    if cached is None:
        measured = run_domain_evals(model, ctx.tokenizer, e.domain_tasks, cache_dir=dcache, limit=e.domain_limit,
                                    seed=ctx.config.seed, include_paths=include)
        cached = {"summary": measured.summary, "per_item": measured.per_item, "doc_ids": measured.doc_ids}
        if path:
            write_json_atomic(path, cached)
    if include:
        cached["summary"] = add_acc_alias(cached["summary"])
    return cached


@register_eval("domain", owns=("domain_",), when=lambda ctx: bool(ctx.eval.domain_tasks))
def domain_vs_reference(ctx: EvalContext) -> EvalOutput:
    """lm-eval tasks for the policy and its reference (and the start, iterating), compared per item."""
    with ctx.as_reference():
        reference = _measured(ctx, ctx.policy, ctx.reference_fingerprint)
    start = _measured(ctx, ctx.start, ctx.start_fingerprint) if ctx.start is not None else None
    if ctx.eval.sequential is not None and ctx.eval.sequential.domain:
        return sequential_domain(ctx, reference, start)
    policy = _measured(ctx, ctx.policy, "")
    out = dict(policy["summary"])
    for task, items in policy["per_item"].items():  # per_item is keyed by eval name, e.g. domain_arith_mc
        baselines = {"": reference["per_item"].get(task, [])}
        if start is not None:  # the paired drop a rule `against: start` reads (harness.gate)
            baselines["_vs_start"] = start["per_item"].get(task, [])
        out.update(paired_summary(task, items, baselines))
    return EvalOutput(out, reference=reference["summary"], start=start["summary"] if start else {})


# ---------------------------------------------------------------------------------- sequential (eval.sequential)


def _task_of(name: str) -> str:
    """eval name -> the lm-eval task `samples=` is keyed by: `domain_arith_mc` -> `harness_arith_mc`."""
    short = name[len(EVAL_PREFIX):]
    return TASK_PREFIX + short if TASK_PREFIX + short in BUILTIN_TASKS else short


def _item_order(doc_ids: list[int], seed: int, name: str) -> list[int]:
    """The order a sequential eval takes a task's documents in: a seeded shuffle, fixed before any result is
    seen, so every prefix is a random sample of the task (a task file sorted by topic would otherwise show its
    first topic's accuracy first). A raised limit appends its documents, shuffled, after the planned ones."""
    rng = random.Random(f"{seed}:{name}")
    order = list(doc_ids)
    rng.shuffle(order)
    return order


def _planned_order(ids: list[int], planned: int, seed: int, name: str) -> list[int]:
    """The first run's documents in the order it took them (`planned` of them), then the ones a raised limit
    added. A lowered limit keeps the first run's order over the documents still there: lm-eval's limit takes the
    first documents, ids 0..n-1, so the first run's were 0..planned-1."""
    if len(ids) >= planned:
        return _item_order(ids[:planned], seed, name) + _item_order(ids[planned:], seed, f"{name}:added")
    if ids == list(range(len(ids))):
        return [i for i in _item_order(list(range(planned)), seed, name) if i < len(ids)]
    return _item_order(ids, seed, name)  # not a prefix of the planned documents: a new order


@dataclass
class _TaskSequence:
    name: str  # eval name, e.g. domain_arith_mc
    order: list[int]  # doc ids in evaluation order
    baselines: dict[str, dict[int, float]]  # "" (reference) / "_vs_start" -> doc id -> score
    sequences: list  # evals.sequential.MetricSequence
    policy: dict[int, float] = field(default_factory=dict)
    looks: list[int] = field(default_factory=list)

    @property
    def used(self) -> int:
        return self.looks[-1] if self.looks else 0

    @property
    def done(self) -> bool:
        deciding = [s for s in self.sequences if s.decides]
        return self.used >= len(self.order) or bool(deciding) and all(s.status != CONTINUE for s in deciding)

    def scores(self) -> dict[str, list[float]]:
        """Per tracked metric, its per-item scores in evaluation order so far."""
        ids = self.order[: self.used]
        policy = [self.policy[i] for i in ids]
        out = {f"{self.name}/acc": policy}
        for suffix, base in self.baselines.items():
            out[f"{self.name}/acc_delta{suffix}"] = [p - base[i] for p, i in zip(policy, ids)]
        return out


def sequential_domain(ctx: EvalContext, reference: dict, start: dict | None) -> EvalOutput:
    """eval.sequential on the domain tasks: the policy answers `batch_items` more documents of every task still
    undecided, in a seeded random order, until each task's rules (ctx.sequential_targets: floors and ceilings on
    `<task>/acc`, allowed regressions on the paired `<task>/acc_delta`) are decided by their anytime-valid bounds
    (betting confidence sequences: accuracy on [0, 1], paired differences on [-1, 1]), or every document is
    used. The reference (and start) are measured on every document once, cached by content and shared by every
    cell; what the sequential eval saves is the policy's evaluation. Everything is reported on the documents
    used, with the anytime bounds the gate must read after such a stop."""
    dcache, include = _task_setup(ctx)

    def measure(batch: dict[str, list[int]]) -> dict[str, dict[int, float]]:
        measured = run_domain_evals(ctx.policy, ctx.tokenizer, [_task_of(name) for name in batch], cache_dir=dcache,
                                    seed=ctx.config.seed, include_paths=include,
                                    samples={_task_of(name): ids for name, ids in batch.items()})
        return {name: dict(zip(measured.doc_ids.get(name, []), measured.per_item.get(name, []))) for name in batch}

    comparison = {"policy": ctx.policy_fingerprint, "reference": ctx.reference_fingerprint,
                  "start": ctx.start_fingerprint if start is not None else None}
    return decide_tasks_sequentially(measure, reference, start, ctx.eval.sequential, ctx.sequential_targets,
                                     ctx.config.seed, cache_dir=ctx.cache_dir, comparison=comparison)


def decide_tasks_sequentially(measure: Callable[[dict[str, list[int]]], dict[str, dict[int, float]]],
                              reference: dict, start: dict | None, seq, targets: dict[str, list],
                              seed: int, *, cache_dir: Path | None = None,
                              comparison: Mapping[str, Any] | None = None) -> EvalOutput:
    """The sequential domain loop, whatever measures the policy: `measure({eval name: doc ids})` returns the
    policy's per-document scores of those documents (lm-eval in a run; simulated outcomes in
    harness.gate_plan, which plans with this same loop). `reference`/`start`: measurements on every document
    ({"summary", "per_item", "doc_ids"}); `seq`: eval.sequential; `targets`: the gate's sequential targets.
    With `cache_dir`, a task's test is planned with the budget of the first run of the same `comparison` (the
    models' fingerprints) on the same first documents (evals.sequential.recorded_plan): a raised
    `eval.domain_limit` continues it."""
    tasks = []
    for name, ref_items in reference["per_item"].items():
        baselines = {"": _by_doc(reference, name)}
        if start is not None:
            baselines["_vs_start"] = _by_doc(start, name)
        deltas = [f"{name}/acc_delta{suffix}" for suffix in baselines]
        bounded = [f"{name}/acc", *deltas]
        wanted = {m: rules for m, rules in targets.items() if m in bounded}
        ids = list(baselines[""])
        planned = recorded_plan(cache_dir, {"eval": name, **(comparison or {}), "seed": seed,
                                            "first_items": ids[:PLAN_FIRST_ITEMS]}, len(ids), seq.batch_items).budget
        sequences = tracked_metrics(wanted, bounded, set(bounded), len(ref_items), seq.confidence, paired=set(deltas),
                                    planned_n=planned)
        tasks.append(_TaskSequence(name, _planned_order(ids, planned, seed, name), baselines, sequences))
    while pending := [t for t in tasks if not t.done]:
        batch = {t.name: t.order[t.used: t.used + seq.batch_items] for t in pending}
        measured = measure(batch)
        for t in pending:
            asked, got = batch[t.name], measured.get(t.name, {})
            if set(got) != set(asked):
                raise RuntimeError(f"lm-eval returned documents {sorted(got)} of {t.name}, asked for {sorted(asked)}")
            t.policy.update(got)
            t.looks.append(t.used + len(asked))
            scores = t.scores()
            for s in t.sequences:
                s.look_betting(np.asarray(scores[s.metric], dtype=float), t.looks)
    return _sequential_output(tasks, reference, start)


def _by_doc(measured: dict, name: str) -> dict[int, float]:
    """A cached measurement's per-item scores of one task by document id (caches from before ids were kept:
    lm-eval's `limit` takes the first documents, ids 0..n-1)."""
    items = measured["per_item"].get(name, [])
    ids = (measured.get("doc_ids") or {}).get(name) or list(range(len(items)))
    return dict(zip(ids, items))


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def _sequential_output(tasks: list[_TaskSequence], reference: dict, start: dict | None) -> EvalOutput:
    out: dict[str, float] = {}
    ref_summary, start_summary = dict(reference["summary"]), dict(start["summary"]) if start else {}
    for t in tasks:
        ids = t.order[: t.used]
        policy = [t.policy[i] for i in ids]
        out[f"{t.name}/acc"], out[f"{t.name}/acc_stderr"] = _mean_stderr(policy)
        out.update(paired_summary(t.name, policy, {s: [b[i] for i in ids] for s, b in t.baselines.items()}))
        # the baselines on the same documents (their whole-task values would describe other items)
        for suffix, summary in (("", ref_summary), ("_vs_start", start_summary)):
            if suffix in t.baselines:
                summary[f"{t.name}/acc"], summary[f"{t.name}/acc_stderr"] = _mean_stderr(
                    [t.baselines[suffix][i] for i in ids])
        out |= sequence_metrics(t.name, t.sequences, t.used, len(t.order), unit="items")
    return EvalOutput(out, reference=ref_summary, start=start_summary,
                      extras={"sequential": {t.name: [s.to_dict() for s in t.sequences] for t in tasks}})

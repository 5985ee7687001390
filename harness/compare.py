"""Head-to-head: two recorded checkpoints judged against each other on the same held-out prompts.

`harness compare RUN_A RUN_B` asks the question a champion comparison really is: is A's answer better
than B's answer to the same prompt? (Comparing two win rates each measured against its own reference,
on different samples, is not that question.) For each run: its evidence must be intact (FINISHED, the
checkpoint and config matching the hashes recorded when it ended: harness.promotion.require_intact),
its checkpoint is rebuilt on its base model (harness.models.load_checkpoint: earlier iterative rounds
merged in order), and it answers greedily the eval prompts run A was measured on (its `eval_prompts`
artifact; builtin make_prompts(n, seed, split="eval") for runs recorded before that artifact). Answers
come from the generation cache when the run left them there: the cache is keyed by the policy fingerprint, which
`checkpoint_fingerprint` computes from the checkpoint files exactly as the pipeline does. A's judge
(its `eval.judge`) then judges every prompt in both orders (evals.judges.position_swap, as the win-rate
eval does) with B in the reference's seat, and evals.winrate_stats gives the paired statistics: raw,
length-controlled and style-controlled win rates of A over B, each with its standard error and 95%
interval, under the usual `winrate/*` keys (50 = no difference; A compared with itself is exactly 50
with zero spread).

Settings come from run A (prompt count and seed, max_new_tokens, judge, bootstrap); each side keeps its
own seed in its decoding settings (greedy decoding ignores it) so that its cached answers are found.
The pipeline's head-to-head with the champion (evals.vs_champion, `winrate_vs_champion/*`) is built from
the same pieces, except that the champion is what the registry holds: `champion_answers` checks the
champion's run (`recorded_policy`), downloads its registered MLflow Model, checks it against the run's
evidence hash and the hash its content-named source names, and takes its answers from the generation cache or, failing
that, from the model loaded through `mlflow.pyfunc.load_model` (`registered_answers`). Both judge with
evals.pairwise.head_to_head, so `harness compare CANDIDATE CHAMPION` reproduces a run's
`winrate_vs_champion/*` exactly (same prompts, answers, judge and settings).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessInputError

# ---------------------------------------------------------------------------------- identity


def _safetensors_digest(seed: str, folder: Path) -> str:
    h = hashlib.sha256(seed.encode())
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def checkpoint_fingerprint(checkpoint_dir: Path, base_fingerprint: str) -> str:
    """The policy fingerprint the pipeline gives this checkpoint (harness.experiment computes it here:
    sha256 of the base's fingerprint and the adapter's safetensors), chained through an adapter stack the
    way iterative rounds chain it (round k's base is round k-1's merged policy, whose fingerprint is round
    k-1's). Caches keyed by it (generations) serve a rebuilt checkpoint what its run generated."""
    checkpoint_dir = Path(checkpoint_dir)
    fingerprint = base_fingerprint
    stack_file = checkpoint_dir / "adapter_stack.json"
    if stack_file.exists():
        for relative in json.loads(stack_file.read_text())["merge_in_order"]:
            fingerprint = _safetensors_digest(fingerprint, checkpoint_dir / relative)
    return _safetensors_digest(fingerprint, checkpoint_dir)


# ---------------------------------------------------------------------------------- a recorded run's policy


@dataclass
class RecordedPolicy:
    run_id: str
    cell: str
    config: Any  # ExperimentConfig, as the run recorded it
    checkpoint_dir: Path  # downloaded, and checked against the run's evidence hash
    checkpoint_sha256: str


def recorded_policy(tracker, run_id: str, workdir: Path) -> RecordedPolicy:
    """A run's checkpoint and config, refused (EvidenceError, exit 2) unless the run FINISHED with its
    evidence intact; the checkpoint downloaded under `workdir` is the one the evidence hash covers."""
    from harness.promotion import (
        CHECKPOINT,
        EVIDENCE,
        EvidenceError,
        files_under,
        load_recorded,
        require_intact,
        tree_sha256,
    )

    try:
        run = tracker.get_run(run_id)
    except Exception:
        raise HarnessInputError(f"no run {run_id!r} in {tracker.tracking_uri}") from None
    if run.data.tags.get("harness.role") == "iterative":
        load_recorded(tracker, run_id)  # raises the input error that names the rounds to use instead
    require_intact(tracker, run_id, "compare it")
    recorded = load_recorded(tracker, run_id)
    local = tracker.download_folder(run_id, CHECKPOINT, Path(workdir) / run_id)
    digest = tree_sha256(files_under(local)) if local is not None else None
    want = run.data.params.get(EVIDENCE + "checkpoint_sha256")
    if digest != want:  # changed between the evidence check and this download
        raise EvidenceError(f"run {run_id}: refusing to compare it", [f"{CHECKPOINT}: the downloaded files do not "
                                                                     "match the recorded hash"])
    return RecordedPolicy(run_id, recorded.cell, recorded.config, local, digest)


@dataclass
class RecordedAnswers:
    completions: list  # evals.generation.Completion, in prompt order
    fingerprint: str  # the policy fingerprint the answers are cached under
    source: str  # "cache" (the run's own generations, or an earlier compare) or "generated"


def _pristine_fingerprint(config, base=None) -> str:
    """What harness.models.load_model would fingerprint the run's base model as, reading no weights: a local or
    embedded model by its files' cached digests, a hub id by the commit the run recorded (`model.revision`),
    else, for a run recorded before it did, the commit `base` has (none without one)."""
    from harness.models import model_fingerprint, resolve_model_path

    cache = config.resolved_cache_dir
    revision = config.model.revision or getattr(base, "revision", None)  # recorded by the run, or base's commit
    return model_fingerprint(resolve_model_path(config.model.name, cache), dtype=config.model.dtype, cache_dir=cache,
                             revision=revision)


def _greedy_settings(policy: RecordedPolicy, max_new_tokens: int):
    from evals.generation import DecodingSettings

    return DecodingSettings(max_new_tokens=max_new_tokens, temperature=0.0, seed=policy.config.seed)


def _cache_entry(policy: RecordedPolicy, prompts: list[str], max_new_tokens: int, fingerprint: str) -> Path:
    """Where evals.generation.generate keeps these answers of the checkpoint with `fingerprint`."""
    from evals.generation import cache_key

    key = cache_key(fingerprint, prompts, _greedy_settings(policy, max_new_tokens))
    return Path(policy.config.resolved_cache_dir) / "generations" / f"{key}.json"


def cached_answers(policy: RecordedPolicy, prompts: list[str], *, max_new_tokens: int, base=None
                   ) -> RecordedAnswers | None:
    """The policy's greedy answers to `prompts` as its run (or an earlier compare) left them in the generation
    cache, found by the checkpoint's fingerprint without loading any weights; None when not there."""
    from evals.generation import Completion
    from harness.atomic_io import read_json

    # no weights needed: file digests for a local or embedded model, the recorded commit for a hub id
    fingerprint = checkpoint_fingerprint(policy.checkpoint_dir, _pristine_fingerprint(policy.config, base))
    cached = read_json(_cache_entry(policy, prompts, max_new_tokens, fingerprint))
    return None if cached is None else RecordedAnswers([Completion(**c) for c in cached], fingerprint, "cache")


def recorded_answers(policy: RecordedPolicy, prompts: list[str], *, max_new_tokens: int, base=None) -> RecordedAnswers:
    """The policy's greedy answers to `prompts` (the pipeline's decoding: evals.generation.generate), from
    the run's generation cache when there (no model is loaded then), else generated on the rebuilt
    checkpoint and cached. `base`: a harness.models.LoadedModel of the run's base model to copy instead of
    loading it from disk; used only when its fingerprint is the pristine base's (an iterative round's merged
    reference is not)."""
    from evals.generation import generate
    from harness.models import load_checkpoint, load_model

    found = cached_answers(policy, prompts, max_new_tokens=max_new_tokens, base=base)
    if found is not None:
        return found
    config = policy.config
    m = config.model
    if base is not None and base.fingerprint != _pristine_fingerprint(config, base):
        base = None  # another model, or an iterative round's merged reference that only kept the name
    if base is None:
        base = load_model(m.name, config.resolved_cache_dir, trust_remote_code=m.trust_remote_code,
                          allow_pickle_weights=m.allow_pickle_weights, dtype=m.dtype, revision=m.revision)
        model = base.model
    else:
        model = copy.deepcopy(base.model)  # load_checkpoint wraps (and, for a stack, merges into) the model
    fingerprint = checkpoint_fingerprint(policy.checkpoint_dir, base.fingerprint)
    cached = _cache_entry(policy, prompts, max_new_tokens, fingerprint).exists()
    rebuilt = load_checkpoint(policy.checkpoint_dir, model)
    completions = generate(rebuilt, base.tokenizer, prompts, _greedy_settings(policy, max_new_tokens),
                           model_fingerprint=fingerprint, cache_dir=config.resolved_cache_dir,
                           batch_size=config.eval.batch_size, label=f"run {policy.run_id[:8]}")
    return RecordedAnswers(completions, fingerprint, "cache" if cached else "generated")


def registered_answers(tracker, model_name: str, version: str, policy: RecordedPolicy, prompts: list[str], *,
                       max_new_tokens: int, workdir: Path) -> RecordedAnswers:
    """A registered version's greedy answers to `prompts`: the version's MLflow Model is downloaded from the
    registry and checked first (its packaged checkpoint must hash to what the run's evidence recorded, and
    the whole folder, whose entry code loading runs, to the hash its source path is named by:
    harness.promotion.served_model_problem); the answers
    then come from the generation cache by the checkpoint's fingerprint, else the model is loaded through
    MLflow's own pyfunc API, as a user loads it, and answers with the pipeline's decoding. EvidenceError
    (exit 2) when the registered files are not the ones promoted."""
    from evals.generation import generate
    from harness.promotion import EvidenceError, files_under, served_model_problem, tree_sha256
    from harness.served_model import CHECKPOINT_ARTIFACT, load_served_model

    folder = tracker.download_version(model_name, version, Path(workdir) / "registered")
    packaged = folder / "artifacts" / CHECKPOINT_ARTIFACT
    problems = []
    if not packaged.is_dir() or tree_sha256(files_under(packaged)) != policy.checkpoint_sha256:
        problems.append(f"its packaged checkpoint does not match run {policy.run_id}'s recorded hash")
    source, tags = tracker.version_record(model_name, version)
    problem = served_model_problem(folder, source, tags.get("harness.served_model_sha256"))
    if problem:  # its entry code is what MLflow would run on loading it
        problems.append(problem)
    if problems:
        raise EvidenceError(f"{model_name} version {version}: refusing to load it", problems)
    found = cached_answers(policy, prompts, max_new_tokens=max_new_tokens)
    if found is not None:
        return found
    config = policy.config
    served = load_served_model(folder, config.resolved_cache_dir)
    fingerprint = checkpoint_fingerprint(packaged, served.base_fingerprint)
    completions = generate(served.model, served.tokenizer, prompts, _greedy_settings(policy, max_new_tokens),
                           model_fingerprint=fingerprint, cache_dir=config.resolved_cache_dir,
                           batch_size=config.eval.batch_size, label=f"{model_name} v{version}")
    return RecordedAnswers(completions, fingerprint, "registered model")


def champion_answers(tracker, model_name: str, champion: tuple[str, str] | None, prompts: list[str], *,
                     max_new_tokens: int, cache_dir: Path | None = None) -> Callable[[], list] | None:
    """For a pipeline's EvalContext: () -> the champion's greedy answers to `prompts` (evals.generation
    Completions), computed only when the head-to-head eval asks: its run refused unless its evidence is intact
    (recorded_policy), its registered MLflow Model checked and loaded through MLflow (registered_answers), or
    its answers served from the generation cache by its checkpoint's fingerprint. `cache_dir`: the pipeline's
    cache, used instead of the one the champion's run recorded (another machine's path, perhaps). None when
    there is no champion."""
    if champion is None:
        return None
    version, run_id = champion

    def answers() -> list:
        with tempfile.TemporaryDirectory(prefix="harness-champion-") as tmp:
            policy = recorded_policy(tracker, run_id, Path(tmp) / "run")
            if cache_dir is not None:
                policy.config = policy.config.model_copy(update={"cache_dir": Path(cache_dir)})
            return registered_answers(tracker, model_name, version, policy, prompts, max_new_tokens=max_new_tokens,
                                      workdir=Path(tmp)).completions

    return answers


EVAL_PROMPTS = "eval_prompts"  # the artifact folder where the pipeline logs the prompts a run was measured on


def recorded_eval_prompts(tracker, policy: RecordedPolicy, n: int | None = None) -> list:
    """The prompts the run was evaluated on, in order: its `eval_prompts` artifact (the snapshot the
    pipeline logs, content-addressed by the hash it records as `eval_prompts.content_hash`), read back by
    evals.eval_prompts with its instructions; for a run recorded before eval prompt sets, the builtin
    prompts make_prompts(eval.n_prompts, seed, split="eval"). `n`: the first n of them; more than the
    run was measured on only for builtin prompts (their sequence is the same whatever the count)."""
    from harness.data.verifiable import make_prompts

    config = policy.config
    if n is not None and n < 5:
        raise HarnessInputError(f"--n-prompts: at least 5 prompts (the LC fit needs them), got {n}")
    params = tracker.get_run(policy.run_id).data.params
    want = params.get(f"{EVAL_PROMPTS}.content_hash", "")
    with tempfile.TemporaryDirectory(prefix="harness-eval-prompts-") as tmp:
        local = tracker.download_folder(policy.run_id, EVAL_PROMPTS, Path(tmp))
        files = sorted(local.glob("*.jsonl")) if local is not None else []
        if files:
            from evals.eval_prompts import load_eval_prompts

            if want and not files[0].name.startswith(want[:24]):  # snapshots are named by their content hash
                raise HarnessInputError(f"run {policy.run_id}: its {EVAL_PROMPTS} artifact ({files[0].name}) is not "
                                        f"the prompt set it recorded ({EVAL_PROMPTS}.content_hash {want[:24]}...)")
            items = list(load_eval_prompts(str(files[0]), n=None, seed=config.seed).items)
            builtin = params.get(f"{EVAL_PROMPTS}.source", "").startswith("builtin")
        else:
            items = make_prompts(config.eval.n_prompts, config.seed, split="eval")
            builtin = True
    if n is None or n == len(items):
        return items
    if n < len(items):
        return items[:n]
    if builtin:
        return make_prompts(n, config.seed, split="eval")
    raise HarnessInputError(f"--n-prompts {n}: run {policy.run_id} was measured on {len(items)} prompts of its own "
                            "set; compare on at most that many")


# ---------------------------------------------------------------------------------- the comparison


@dataclass
class ComparisonResult:
    run_a: str
    run_b: str
    cell_a: str
    cell_b: str
    n_prompts: int
    judge: str
    metrics: dict[str, Any]  # winrate/*: A's win rate over B, with _stderr, _ci_low, _ci_high; *_missing_reason
    verdicts: list[float]  # per prompt: 1 = B wins, 2 = A wins, 1.5 tie (after the position swap)
    samples: list[dict] = field(default_factory=list)  # prompt, a, b, verdict
    answers: dict[str, dict] = field(default_factory=dict)  # per side: fingerprint, source (cache/generated)
    # run A's own `winrate_vs_champion/*` when its pipeline judged it against run B (its champion then), as
    # MLflow holds them (NaN included: a statistic with no value, e.g. the first-position rate when every verdict
    # ties), else empty; `reproduces` says whether this comparison gave each exactly
    recorded: dict[str, float] = field(default_factory=dict)

    @property
    def reproduces(self) -> bool | None:
        from evals.vs_champion import HEAD_TO_HEAD

        mine = self.renamed(HEAD_TO_HEAD)
        # a sequential head-to-head's stopping record and anytime bounds belong to its sequential test; the
        # comparison reproduces the statistics on the prompts it judged (compare_runs takes that many)
        checked = {k: v for k, v in self.recorded.items() if "/sequential_" not in k and "_anytime_" not in k}
        return all(_same_value(mine.get(k), v) for k, v in checked.items()) if checked else None

    def renamed(self, prefix: str) -> dict[str, Any]:
        """The metrics under another eval name, e.g. `winrate_vs_champion/lc_win_rate_pct`."""
        from evals.pairwise import renamed_key

        return {renamed_key(k, prefix): v for k, v in self.metrics.items()}

    def to_json(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "cell_a": self.cell_a, "cell_b": self.cell_b,
                "n": self.n_prompts, "judge": self.judge,
                "reading": "winrate/* is RUN_A's win rate over RUN_B on the same prompts (ties count half; 50 = "
                           "no difference); _ci_low/_ci_high: 95% interval",
                "metrics": self.metrics, "answers": self.answers, "samples": self.samples,
                "recorded_head_to_head": {"metrics": self.recorded, "reproduced": self.reproduces}}


def _same_value(mine: Any, recorded: float) -> bool:
    """Exactly the recorded value; NaN reproduces NaN (NaN metrics are logged: harness.tracking)."""
    if isinstance(mine, float) and isinstance(recorded, float) and math.isnan(mine) and math.isnan(recorded):
        return True
    return mine == recorded


def recorded_head_to_head(tracker, run_a: str, run_b: str) -> dict[str, float]:
    """Run A's `winrate_vs_champion/*` metrics when the pipeline judged it head to head against run B (the
    champion when A was evaluated: tag `harness.vs_champion.run_id`), else {}."""
    from evals.vs_champion import CHAMPION_VERSION, HEAD_TO_HEAD

    run = tracker.get_run(run_a)
    if run.data.tags.get("harness.vs_champion.run_id") != run_b:
        return {}
    return {k: v for k, v in run.data.metrics.items() if k.startswith(f"{HEAD_TO_HEAD}/") and k != CHAMPION_VERSION}


def compare_runs(tracker, run_a: str, run_b: str, *, n_prompts: int | None = None, prompts: list | None = None,
                 base=None, workdir: Path | None = None) -> ComparisonResult:
    """Run A's answers judged against run B's on A's held-out eval prompts (module docstring), or on
    `prompts` (objects with `.text`, e.g. a pipeline's EvalContext.prompts). Raises EvidenceError (an
    input error: exit 2) for a run that did not finish or whose evidence moved."""
    from evals.pairwise import head_to_head
    from evals.vs_champion import HEAD_TO_HEAD

    recorded = recorded_head_to_head(tracker, run_a, run_b)
    stopped_at = recorded.get(f"{HEAD_TO_HEAD}/sequential_prompts_used")
    if prompts is None and n_prompts is None and stopped_at is not None and stopped_at >= 5:  # the prompts it judged
        n_prompts = int(stopped_at)
    with tempfile.TemporaryDirectory(prefix="harness-compare-") as tmp:
        root = Path(workdir or tmp)
        a = recorded_policy(tracker, run_a, root / "a")
        b = a if run_b == run_a else recorded_policy(tracker, run_b, root / "b")
        e = a.config.eval
        if prompts is None:
            prompts = recorded_eval_prompts(tracker, a, n_prompts)
        n = len(prompts)
        texts = [p.text for p in prompts]
        answers_a = recorded_answers(a, texts, max_new_tokens=e.max_new_tokens, base=base)
        answers_b = answers_a if b is a else recorded_answers(b, texts, max_new_tokens=e.max_new_tokens, base=base)
    # the judging the pipeline's head-to-head does (evals.vs_champion): the same function, so they cannot drift
    summary, verdicts = head_to_head(prompts, answers_b.completions, answers_a.completions, e, seed=a.config.seed,
                                     cache_dir=a.config.resolved_cache_dir)
    judge = e.judge if isinstance(e.judge, str) else getattr(e.judge, "name", str(e.judge))
    samples = [{"prompt": p.text, "a": ca.text, "b": cb.text, "verdict": v}
               for p, ca, cb, v in zip(prompts, answers_a.completions, answers_b.completions, verdicts)]
    return ComparisonResult(run_a, run_b, a.cell, b.cell, n, judge, summary, verdicts, samples,
                            {"a": {"fingerprint": answers_a.fingerprint, "source": answers_a.source},
                             "b": {"fingerprint": answers_b.fingerprint, "source": answers_b.source}},
                            recorded)

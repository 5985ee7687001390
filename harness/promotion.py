"""All registry side effects: record a gate decision, keep the evidence behind it intact, promote a
validated run under a lock, force with a reason.

Three promises (issue 16):
- Evidence: when a run ends, the content hashes of what decided it (config.json, eval_errors.json,
  the metrics, the checkpoint files) are recorded as MLflow params, which MLflow keeps immutable.
  Before any gate or promotion they are recomputed from what the store holds now; a run that did
  not FINISH, a missing or partial checkpoint, or any hash that moved is refused, naming the artifact.
- Promotion is the last step: the caller has written generations, artifacts, report and run status
  before `promote_run` moves the alias; the version is tagged `harness.validated=true` only after
  the alias moved and was read back; anything failing after the move puts the previous champion
  back (or removes the alias when there was none) and deletes the new version.
- A lock around champion read -> compare -> alias set: a lock file beside a SQLite store; on a
  remote server a lease tag on the registered model (set, wait, read back) plus a read-back of the
  alias after it is set. Inside the lock the champion is re-read and the run re-decided if it moved.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from evals.metrics import measurements
from harness.atomic_io import file_sha256
from harness.errors import HarnessInputError
from harness.gate import BLOCK, PROMOTE, REGISTERED_VERSION, CheckResult, GateDecision
from harness.redaction import scrub_text

EVIDENCE = "harness.evidence."  # param prefix of the recorded hashes
CHECKPOINT = "checkpoint"  # the run's artifact folder holding its checkpoint (what the evidence hashes)
SERVED_MODEL = "model"  # the MLflow Model around that checkpoint, under `model-<hash>`: what a version is registered from
LEASE_TAG = "harness.promotion_lease"  # registered-model tag holding the remote promotion lease
JUDGE_FINGERPRINT_TAG = "harness.judge_calibration.fingerprint"  # set by the run from the judge it used
# on a sweep's parent run, once: the cell it selected ("-": none). A param, so the selection cannot be re-pointed
SELECTED_CELL = EVIDENCE + "select_winner_run_id"
_UNSEEN = object()


class EvidenceError(HarnessInputError):
    """A run whose evidence cannot back a decision: not finished, checkpoint missing or partial, or an
    artifact that no longer matches its recorded hash. Exit 2 at the CLI."""


class PromotionLockTimeout(RuntimeError):
    pass


@dataclass
class PromotionOutcome:
    decision: GateDecision
    version: str | None  # registered model version when promoted
    previous: tuple[str, str] | None = None  # the champion (version, run_id) the promotion replaced or kept


# ---------------------------------------------------------------------------- decisions


def record_decision(tracker, decision: GateDecision, *, name: str = "gate_decision.json") -> None:
    """The run's own verdict (tags + JSON artifact). Only decisions made with the run's own config land here."""
    tracker.log_json(decision.to_dict(), name)
    tags = {"harness.verdict": decision.verdict,
            "harness.failed_checks": ",".join(c.name for c in decision.failed) or "-"}
    tags["harness.block_reason"] = decision.first_failure or "-"
    tracker.set_tags(tags)


def gate_config_key(config, against: str | None = None) -> str:
    """A short content key of everything that decides a verdict besides the measurements: the gate
    section, the domain tasks (default rules read them), start gating, an `--against` override, and the
    registered model and alias whose champion `against: champion` rules read."""
    payload = {"gate": config.gate.model_dump(mode="json"), "domain_tasks": list(config.eval.domain_tasks),
               "gate_vs_start": config.iteration.gate_vs_start, "against": against,
               # `against: champion` rules read the champion of this registered model and alias
               "registry": [config.registry.model_name, config.registry.alias]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def record_regate(tracker, decision: GateDecision, *, key: str, source: str) -> None:
    """A verdict under another gate config (`harness gate RUN --config other.yaml` or `--against`): under
    its own tags and artifact, never the run's `harness.verdict`, which resumed sweeps, reports and
    `harness promote` read."""
    tracker.log_json(decision.to_dict() | {"config": source}, f"gate_decision_regate_{key}.json")
    prefix = f"harness.regate.{key}."
    tracker.set_tags({prefix + "verdict": decision.verdict, prefix + "config": source or "-",
                      prefix + "failed_checks": ",".join(c.name for c in decision.failed) or "-",
                      prefix + "block_reason": decision.first_failure or "-"})


def _with_failed_check(decision: GateDecision | None, name: str, reason: str) -> GateDecision:
    checks = list(decision.checks) if decision else []
    return GateDecision(BLOCK, checks + [CheckResult(name=name, metric="-", passed=False, reason=reason)])


# ---------------------------------------------------------------------------- evidence


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def metrics_sha256(metrics: Mapping[str, float]) -> str:
    """Of every metric a gate can read (train/* history is not read), as the store hands them back."""
    items = sorted((k, repr(float(v))) for k, v in metrics.items() if not k.startswith("train/"))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()



def files_under(root: Path, prefix: str = "") -> dict[str, Path]:
    """{relative posix path: file} of every file under `root` (as `log_artifacts` uploads them)."""
    root = Path(root)
    return {prefix + p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def tree_sha256(files: Mapping[str, Path]) -> str:
    """One hash of a folder: each file's relative path and content hash, in path order."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{file_sha256(files[rel])}\n".encode())
    return h.hexdigest()


def record_evidence(tracker, checkpoint_files: Mapping[str, Path]) -> dict[str, str]:
    """At the end of a run, after every metric and artifact the decision read: config.json,
    eval_errors.json and the metrics as the store holds them, the checkpoint as it was on disk
    when uploaded (so a partial upload shows as a mismatch later). Params are immutable in MLflow."""
    run_id = tracker.run_id
    values: dict[str, str] = {}
    for label, name in (("config", "config.json"), ("eval_errors", "eval_errors.json")):
        text = tracker.load_text(run_id, name)
        if text is None:
            raise RuntimeError(f"{name} is not stored with run {run_id}: nothing to record evidence of")
        values[f"{label}_sha256"] = text_sha256(text)
    values["metrics_sha256"] = metrics_sha256(tracker.run_metrics(run_id))
    # which judge the judge/* rules describe: a re-gate reads that judge's calibration (load_recorded), so the
    # name must be as immutable as the rest (a tag pointing at another, better calibrated judge flipped a verdict)
    tags = tracker.get_run(run_id).data.tags
    fingerprint = tags.get(JUDGE_FINGERPRINT_TAG)
    if fingerprint:
        values["judge_fingerprint"] = fingerprint
    if tags.get("harness.role") == "cell" and tags.get("mlflow.parentRunId"):  # only its sweep may promote it
        values["sweep_parent_run_id"] = tags["mlflow.parentRunId"]
    values["checkpoint_sha256"] = tree_sha256(checkpoint_files)
    values["checkpoint_files"] = str(len(checkpoint_files))
    tracker.log_evidence({EVIDENCE + k: v for k, v in values.items()})
    return values


def checkpoint_problems(tracker, run_id: str, recorded: Mapping[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="harness-evidence-") as tmp:
        local = tracker.download_folder(run_id, CHECKPOINT, Path(tmp))
        if local is None:
            return [f"{CHECKPOINT}: artifact missing (never uploaded, or the upload failed)"]
        files = files_under(local)
        if not files:
            return [f"{CHECKPOINT}: artifact folder is empty"]
        want = recorded.get("checkpoint_sha256")
        if want is None:
            return [f"{CHECKPOINT}: no recorded hash ({EVIDENCE}checkpoint_sha256), so a partial upload "
                    "cannot be told from a complete one"]
        if tree_sha256(files) != want:
            return [f"{CHECKPOINT}: {len(files)} file(s) stored, {recorded.get('checkpoint_files', '?')} recorded; "
                    "the content differs from the hash recorded when the run ended (a partial upload or an edit)"]
    return []


def evidence_problems(tracker, run_id: str) -> list[str]:
    """Why this run's recorded evidence cannot back a decision; [] when it is intact."""
    run = tracker.get_run(run_id)
    problems = []
    if run.info.status != "FINISHED":
        why = run.data.tags.get("harness.error")
        problems.append(f"run status is {run.info.status}, not FINISHED" + (f" ({why})" if why else
                                                                            " (it crashed or was killed)"))
    recorded = {k[len(EVIDENCE):]: v for k, v in run.data.params.items() if k.startswith(EVIDENCE)}
    problems += checkpoint_problems(tracker, run_id, recorded)
    if not recorded:
        return problems + [f"no evidence hashes recorded ({EVIDENCE}*): the run ended before recording them"]
    for label, name in (("config", "config.json"), ("eval_errors", "eval_errors.json")):
        text = tracker.load_text(run_id, name)
        if text is None:
            problems.append(f"{name}: artifact missing")
        elif text_sha256(text) != recorded.get(f"{label}_sha256"):
            problems.append(f"{name}: content differs from the hash recorded when the run ended (edited afterwards)")
    if metrics_sha256(tracker.run_metrics(run_id)) != recorded.get("metrics_sha256"):
        problems.append("metrics: differ from those recorded when the run ended (a metric was logged again afterwards)")
    return problems


def sweep_selection_problem(tracker, run_id: str) -> str | None:
    """Why a sweep's cell may not be promoted on its own, or None (not a sweep's cell, or its sweep selected it).
    A sweep gates each cell at its share of the level and promotes only the cell it selects once every cell
    finished: promoting another, or any before the selection, breaks the sweep's error rate. Read from the
    immutable params (the cell's evidence, the parent's recorded selection); a cell or sweep recorded before
    those params existed falls back to the tags it was recorded with."""
    run = tracker.get_run(run_id)
    parent = run.data.params.get(EVIDENCE + "sweep_parent_run_id")
    legacy = not parent and run.data.tags.get("harness.role") == "cell"  # recorded before its evidence named the sweep
    if legacy:
        parent = run.data.tags.get("mlflow.parentRunId")
    if not parent:
        return ("its sweep selected another cell" if run.data.tags.get("harness.selection") == "passed-not-selected"
                else None)
    try:
        parent_run = tracker.get_run(parent)
    except Exception as exc:
        return f"its sweep's run {parent} cannot be read ({type(exc).__name__}), so its selection is unknown"
    # a sweep that selected before the selection was a param recorded it as a tag ("-": none)
    winner = parent_run.data.params.get(SELECTED_CELL) or parent_run.data.tags.get("harness.select.winner_run_id")
    if winner is None:
        return (f"its sweep (parent run {parent}) has not selected a cell yet (not every cell finished): rerun the "
                "sweep to finish it; it promotes the one cell it selects")
    if winner != run_id:
        return (f"its sweep (parent run {parent}) selected " + ("no cell" if winner == "-" else f"another cell (run "
                                                                f"{winner})") + "; promoting more than one cell of a "
                "sweep breaks the sweep's error rate")
    return None


def require_intact(tracker, run_id: str, action: str) -> None:
    refuse_parent_run(tracker, run_id)  # first: its own evidence is not what a user meant to check
    problems = evidence_problems(tracker, run_id)
    if problems:
        raise EvidenceError(f"run {run_id}: refusing to {action}: its evidence cannot back a decision", problems)


def served_model_path(folder_sha256: str) -> str:
    """Where a packaged model folder is stored in its run, named by its content: a version's source (which
    the registry never changes) then names the hash its files must have, and a later packaging of the same run
    lands beside it instead of over the files of a version already registered."""
    return f"{SERVED_MODEL}-{folder_sha256[:24]}"


def served_model_problem(folder: Path, source: str, tagged: str | None) -> str | None:
    """Why a registered version's downloaded model `folder` is not what was packaged, or None: its hash must
    match the one its source path is named by (`model-<hash>`), or, for a version packaged before that
    naming, the hash its `harness.served_model_sha256` tag recorded."""
    digest = tree_sha256(files_under(folder))
    named = source.rstrip("/").rsplit("/", 1)[-1]
    if named.startswith(f"{SERVED_MODEL}-"):
        return None if digest.startswith(named.removeprefix(f"{SERVED_MODEL}-")) else \
            f"its model folder does not match the hash its source {named} is named by (edited after packaging)"
    if tagged is None:
        return "no hash of its model folder was recorded (registered outside the harness?)"
    return None if digest == tagged else "its model folder does not match the hash recorded when it was packaged"


def log_served_model(tracker) -> tuple[str, dict[str, str]]:
    """Package the run's (`tracker.run_id`) checkpoint as an MLflow Model (harness.served_model: a pyfunc
    that rebuilds base + adapters and answers prompts) under its `model-<hash>` artifact; return that path and
    the version tags describing it. Built from the checkpoint as the store holds it, after checking it against
    the hash recorded when the run ended: the files that ship are the files the evidence covers. Packaged
    afresh at every promotion attempt (nothing stored earlier is trusted), each under its own content-named
    path, so no registered version's files change under it."""
    run_id = tracker.run_id
    params = tracker.get_run(run_id).data.params
    want = params.get(EVIDENCE + "checkpoint_sha256")
    with tempfile.TemporaryDirectory(prefix="harness-served-model-") as tmp:
        local = tracker.download_folder(run_id, CHECKPOINT, Path(tmp) / "download")
        digest = tree_sha256(files_under(local)) if local is not None else None
        if want is None or digest != want:
            raise EvidenceError(f"run {run_id}: refusing to package its checkpoint as a model",
                                [f"{CHECKPOINT}: stored content {'missing' if local is None else digest} does not "
                                 f"match the recorded hash {want}"])
        config = tracker.load_json(run_id, "config.json")
        from harness.served_model import save_served_model  # imports mlflow.pyfunc: only when packaging

        folder = save_served_model(Path(tmp) / SERVED_MODEL, local, config,
                                   metadata_tags={"harness.run_id": run_id, "harness.checkpoint_sha256": digest})
        served_sha = tree_sha256(files_under(folder))
        path = served_model_path(served_sha)
        tracker.log_artifact(folder, path)
    return path, {"harness.model_format": "mlflow-pyfunc", "harness.base_model": str(config["model"]["name"]),
                  "harness.checkpoint_sha256": digest, "harness.served_model_sha256": served_sha}


# ---------------------------------------------------------------------------- the lock


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def champion_lock(tracker, model_name: str, *, timeout_s: float = 600.0, lease_ttl_s: float = 300.0,
                  settle_s: float = 1.0) -> Iterator[None]:
    """Held around champion read -> compare -> alias set. SQLite: an OS lock on a file beside the
    database (released by the kernel if the holder dies). A remote server has no lock primitive:
    a lease tag on the registered model, written, left to settle and read back (two writers that
    both saw no lease both write; only the one whose value is still there after `settle_s` holds
    it), expiring after `lease_ttl_s` so a killed holder cannot block forever."""
    db = _sqlite_path(tracker.tracking_uri)
    if db is not None:
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(db.with_name(db.name + ".promotion.lock")), timeout=timeout_s):
                yield
        except Timeout:
            raise PromotionLockTimeout(f"another promotion held {db}.promotion.lock for {timeout_s:g} s") from None
        return
    with _lease(tracker, model_name, timeout_s=timeout_s, ttl_s=lease_ttl_s, settle_s=settle_s):
        yield


@contextlib.contextmanager
def _lease(tracker, model_name: str, *, timeout_s: float, ttl_s: float, settle_s: float) -> Iterator[None]:
    tracker.ensure_registered_model(model_name)
    owner = uuid.uuid4().hex
    deadline = time.time() + timeout_s
    mine = None
    while mine is None:
        held = _parse_lease(tracker.model_tags(model_name).get(LEASE_TAG))
        if held and held.get("owner") != owner and held.get("expires", 0) > time.time():
            if time.time() > deadline:
                raise PromotionLockTimeout(f"promotion lease on {model_name!r} held by pid {held.get('pid')} on "
                                           f"{held.get('host')} for over {timeout_s:g} s")
            time.sleep(0.2 + 0.3 * (uuid.uuid4().int % 100) / 100)  # jittered: racing waiters spread out
            continue
        value = json.dumps({"owner": owner, "pid": os.getpid(), "host": socket.gethostname(),
                            "expires": time.time() + ttl_s})
        tracker.set_model_tag(model_name, LEASE_TAG, value)
        time.sleep(settle_s)  # longer than any competitor's read -> write gap: its write would show by now
        if tracker.model_tags(model_name).get(LEASE_TAG) == value:
            mine = value
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            if tracker.model_tags(model_name).get(LEASE_TAG) == mine:
                tracker.delete_model_tag(model_name, LEASE_TAG)


def _parse_lease(text: str | None) -> dict | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------- moving the alias


class LostRace(RuntimeError):
    """The alias read back after setting it names another version: a writer outside the lock moved it."""


def _move_alias(tracker, registry, previous: tuple[str, str] | None, *, cell: str, version_tags: dict[str, str],
                final_tags: dict[str, str], hooks: Mapping[str, Callable]) -> str:
    """Register the checkpoint (as an MLflow Model), point the alias at it, read it back, then mark the version final
    (`harness.validated=true` for a gated promotion). On any failure the registry is put back: the
    previous champion restored (or the alias removed), the new version deleted, a registered model
    this call created removed again."""
    model, alias = registry.model_name, registry.alias
    if "promotion:before_alias" in hooks:  # fault injection: between the champion read and the alias move
        hooks["promotion:before_alias"]()
    created_model = tracker.ensure_registered_model(model)
    version, moved = None, False
    try:
        path, served = log_served_model(tracker)  # the MLflow Model is what ships: logged now, from the verified files
        version = tracker.create_version(model, path, tags={"harness.cell": cell, "harness.validated": "false",
                                                            "harness.promotion": "pending", **served, **version_tags})
        tracker.set_alias(model, alias, version)
        moved = True
        now = tracker.champion(model, alias)
        if now is None or now[0] != version:
            moved = False  # not ours any more: whoever moved it owns it; never restore over them
            raise LostRace(f"the alias '{alias}' names version {now[0] if now else None} right after it was set "
                           f"to {version}: another writer moved it outside the promotion lock")
        if "promotion:after_alias" in hooks:  # fault injection: after the alias moved
            hooks["promotion:after_alias"](version)
        tracker.set_version_tags(model, version, final_tags | {"harness.promotion": "done"})
        return version
    except BaseException as exc:
        _roll_back(tracker, model, alias, previous, version, moved, created_model, exc)
        raise


def _roll_back(tracker, model: str, alias: str, previous, version, moved: bool, created_model: bool, exc) -> None:
    errors = []
    if moved:
        try:
            if previous is not None:
                tracker.set_alias(model, alias, previous[0])
            else:
                tracker.delete_alias(model, alias)
        except Exception as restore_exc:
            errors.append(f"restoring '{alias}' to {previous[0] if previous else 'nothing'}: {restore_exc}")
    if version is not None:
        try:
            tracker.delete_version(model, version)
        except Exception as delete_exc:
            with contextlib.suppress(Exception):
                tracker.set_version_tags(model, version, {"harness.validated": "false", "harness.promotion": "failed"})
            errors.append(f"deleting version {version}: {delete_exc}")
    if created_model and not errors:
        with contextlib.suppress(Exception):
            if not tracker.registry_snapshot(model).get("versions"):
                tracker.delete_registered_model(model)
    if errors:  # the registry is not as it was: say so loudly, with what to fix by hand
        raise RuntimeError(f"promotion failed ({type(exc).__name__}: {exc}) and the roll-back failed too: "
                           + "; ".join(errors)) from exc


def champion_baseline(tracker, champion: tuple[str, str] | None) -> dict[str, float] | None:
    """What `against: champion` rules compare with: the champion run's recorded metrics, plus the registered
    version it was read as (harness.gate.REGISTERED_VERSION), which a head-to-head measurement must name
    (harness.gate.champion_mismatch). None when there is no champion."""
    if champion is None:
        return None
    version, run_id = champion
    # a version registered outside the harness may have no run: nothing recorded to compare with, so every
    # rule against it fails closed as missing (never a crash that leaves the decision unmade)
    return (tracker.run_metrics(run_id) if run_id else {}) | {REGISTERED_VERSION: float(version)}


def promote_run(tracker, registry, decide: Callable[[dict | None], GateDecision], *, cell: str,
                seen=_UNSEEN, decision: GateDecision | None = None, version_tags: dict[str, str] | None = None,
                hooks: Mapping[str, Callable] | None = None, lock_timeout_s: float = 600.0) -> PromotionOutcome:
    """The last step of a run (`tracker.run_id`), after it ended FINISHED with its evidence recorded.

    `decide(champion_metrics or None)` is the run's gate; `decision` the verdict it gave against the
    champion `seen` (omit both to decide here). Under the champion lock: the evidence is re-checked,
    the champion re-read and, if it moved, the run re-decided against it; only a PROMOTE moves the
    alias. A failure anywhere becomes a BLOCK with its reason, recorded on the run, registry restored."""
    hooks = hooks or {}
    with champion_lock(tracker, registry.model_name, timeout_s=lock_timeout_s):
        problems = evidence_problems(tracker, tracker.run_id)
        current = tracker.champion(registry.model_name, registry.alias)
        if problems:
            decision = _with_failed_check(decision, "evidence_intact", "; ".join(problems))
            record_decision(tracker, decision)
            tracker.set_tags({"harness.promoted": "false"})
            return PromotionOutcome(decision, None, current)
        if decision is None or current != seen:  # the champion moved since the decision: decide again
            decision = decide(champion_baseline(tracker, current))
            record_decision(tracker, decision)
        if decision.verdict != PROMOTE:
            tracker.set_tags({"harness.promoted": "false"})
            return PromotionOutcome(decision, None, current)
        try:
            version = _move_alias(tracker, registry, current, cell=cell, version_tags=version_tags or {},
                                  final_tags={"harness.validated": "true"}, hooks=hooks)
        except Exception as exc:
            restored = f"version {current[0]} is champion again" if current else "no champion, as before"
            decision = _with_failed_check(decision, "promotion", scrub_text(f"{type(exc).__name__}: {exc}; {restored}"))
            record_decision(tracker, decision)
            tracker.set_tags({"harness.promoted": "false", "harness.promotion_error": f"{type(exc).__name__}: {exc}"})
            return PromotionOutcome(decision, None, current)
        tracker.set_tags({"harness.model_version": version, "harness.promoted": "true"})
        return PromotionOutcome(decision, version, current)


def force_promote(tracker, registry, *, cell: str, reason: str, user: str,
                  hooks: Mapping[str, Callable] | None = None) -> str:
    """Promotion of a run the gate did not validate: allowed only with a reason, recorded, and only of a
    complete checkpoint (present and matching its recorded hash) of a run that is no longer running."""
    run_id = tracker.run_id
    if not reason.strip():
        raise EvidenceError(f"run {run_id}: refusing to force-promote without a reason", ["the reason is blank"])
    with champion_lock(tracker, registry.model_name):
        status = tracker.run_status(run_id)
        recorded = {k[len(EVIDENCE):]: v for k, v in tracker.get_run(run_id).data.params.items()
                    if k.startswith(EVIDENCE)}
        problems = ([f"run status is {status}: it may still be writing its checkpoint"] if status == "RUNNING" else [])
        problems += checkpoint_problems(tracker, run_id, recorded)
        if problems:
            raise EvidenceError(f"run {run_id}: refusing to force-promote", problems)
        previous = tracker.champion(registry.model_name, registry.alias)
        version = _move_alias(tracker, registry, previous, cell=cell,
                              version_tags={"harness.forced": "true", "harness.force_reason": reason},
                              final_tags={"harness.validated": "false", "harness.forced": "true"}, hooks=hooks or {})
        tracker.set_tags({"harness.model_version": version, "harness.promoted": "true", "harness.forced": "true",
                          "harness.force_reason": reason, "harness.forced_by": user})
        tracker.log_json({"forced": True, "reason": reason, "by": user, "version": version,
                          "previous_champion": previous[0] if previous else None}, "forced_promotion.json")
        return version


# ---------------------------------------------------------------------------- recorded runs


@dataclass
class RecordedRun:
    run_id: str
    cell: str
    config: object  # ExperimentConfig
    metrics: dict[str, float]
    reference: dict[str, float]
    errors: dict[str, str]
    verdict: str | None
    start: dict[str, float] = field(default_factory=dict)  # iterative rounds >= 2: the starting model's values
    tags: dict[str, str] = field(default_factory=dict)


def refuse_parent_run(tracker, run_id: str) -> None:
    """An iterative experiment's parent run decides nothing itself: name its rounds instead."""
    run = tracker.get_run(run_id)
    if run.data.tags.get("harness.role") == "iterative":
        rounds = [r.info.run_id for r in tracker.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")]
        raise HarnessInputError(f"run {run_id} is an iterative experiment's parent run; gate or promote one of its "
                                f"rounds: {', '.join(rounds) or 'none recorded'}")


def load_recorded(tracker, run_id: str, config_override=None) -> RecordedRun:
    from harness.config import validate_config

    refuse_parent_run(tracker, run_id)
    run = tracker.get_run(run_id)
    all_metrics = dict(run.data.metrics)
    config = config_override or validate_config(tracker.load_json(run_id, "config.json"),
                                                source=f"run {run_id} config.json", recorded=True)
    metrics = measurements(all_metrics)
    # judge/* describe the judge, not the cell: its newest calibration applies (maybe done since); which judge
    # is read from the immutable evidence, never from the run's tag (tags can be edited)
    judge_fingerprint = run.data.params.get(EVIDENCE + "judge_fingerprint")
    if judge_fingerprint:
        from evals.judge_calibration import stored_calibration

        stored = stored_calibration(tracker, judge_fingerprint)
        metrics = {k: v for k, v in metrics.items() if not k.startswith("judge/")} | (stored.metrics if stored else {})
    return RecordedRun(
        run_id=run_id, cell=run.data.tags.get("harness.cell", "?"), config=config, metrics=metrics,
        reference={k.removeprefix("reference/"): v for k, v in all_metrics.items() if k.startswith("reference/")},
        start={k.removeprefix("start/"): v for k, v in all_metrics.items() if k.startswith("start/")},
        errors=tracker.load_json(run_id, "eval_errors.json"), verdict=run.data.tags.get("harness.verdict"),
        tags=dict(run.data.tags),
    )


def regate(recorded: RecordedRun, champion_metrics: dict | None, *, against: str | None = None) -> GateDecision:
    from evals.catalog import known_metrics
    from harness.gate import gate, rules_for

    config = recorded.config
    rules = rules_for(config, iterating=bool(recorded.start), against=against)
    baselines = {"reference": recorded.reference, "start": recorded.start or recorded.reference,
                 "champion": champion_metrics}
    return gate(recorded.metrics, baselines, rules,
                specs=known_metrics(), errors=recorded.errors,
                allow_promote_without_rules=config.gate.allow_promote_without_rules,
                family_size=config.gate.family_size)

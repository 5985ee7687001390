"""MLflow tracking and the model registry: the one module that talks to a tracking store (the MLflow Model
a promoted version ships as is built in harness/served_model.py, which imports mlflow.pyfunc for it).

SQLite backend under the output directory (MLflow 3 deprecates the file store). Params
are immutable in MLflow, so mutable state (verdict, status) lives in tags.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

# one redaction for everything written or logged (by key name and by value); re-exported for the callers
from harness.redaction import REDACTED, SECRET_KEY, redact, scrub_text  # noqa: F401

# MLflow's SQL stores keep +-inf as +-sys.float_info.max (sqlalchemy_store._get_metric_value_details: the
# column cannot hold inf) and hand that finite number back. No measurement is legitimately that large,
# so on the way out it is read as the infinity it was: a re-gate must see the inf the live gate saw.
_SQL_INF = sys.float_info.max


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = tree
    return out


def stored_metric_value(value: float) -> float:
    """A metric value as it was logged: +-inf for the +-float max an SQL store keeps instead."""
    return math.copysign(math.inf, value) if isinstance(value, float) and abs(value) >= _SQL_INF else value


def _restore_run(run: Any) -> Any:
    metrics = run.data.metrics  # RunData hands out its own dict: fixing it fixes every reader of this run
    for key, value in metrics.items():
        metrics[key] = stored_metric_value(value)
    return run


_CLIENT_CLASS = None


def _client_class():
    """MlflowClient whose runs and metric histories carry +-inf where +-inf was logged. Every reader
    (promotion, sweeps, reports, calibrations) goes through `Tracker.client`, so they all see it."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        import mlflow
        from mlflow.entities import Metric

        class Client(mlflow.MlflowClient):
            def get_run(self, run_id):
                return _restore_run(super().get_run(run_id))

            def search_runs(self, *args, **kwargs):
                runs = super().search_runs(*args, **kwargs)
                for run in runs:
                    _restore_run(run)
                return runs

            def get_metric_history(self, run_id, key):
                return [Metric(m.key, stored_metric_value(m.value), m.timestamp, m.step)
                        for m in super().get_metric_history(run_id, key)]

        _CLIENT_CLASS = Client
    return _CLIENT_CLASS


# MLflow's rules for alias and model names (mlflow/utils/validation.py: _validate_model_alias_name,
# _validate_model_alias_name_reserved, _validate_model_name), checked when a config loads: MLflow
# itself refuses them only when the alias moves, after training and evaluation have run.
_ALIAS_CHARS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")  # `models:/name@v3` would be ambiguous with version 3
MAX_ALIAS_LENGTH = 255


def alias_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` as a registered-model alias, or None when it is accepted."""
    if not isinstance(name, str) or not name:
        return "an alias cannot be empty"
    if not _ALIAS_CHARS.match(name):
        return f"alias {name!r}: only letters, digits, underscores (_) and dashes (-) are allowed"
    if len(name) > MAX_ALIAS_LENGTH:
        return f"alias {name[:20]!r}...: longer than MLflow's {MAX_ALIAS_LENGTH} characters"
    if name.lower() == "latest":
        return f"alias {name!r}: 'latest' (any case) is reserved by MLflow for the newest version"
    if _VERSION_ALIAS.match(name):
        return f"alias {name!r}: names like v1, V2 are reserved by MLflow for version numbers"
    return None


def model_name_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` as a registered model's name, or None."""
    if not isinstance(name, str) or not name.strip():
        return "a registered model name cannot be empty"
    if "/" in name or ":" in name:
        return f"registered model name {name!r}: cannot contain '/' or ':'"
    import posixpath

    norm = posixpath.normpath(name)  # MLflow's path_not_unique: the name is used as a storage path
    if norm != name or norm == "." or norm.startswith(".."):
        return f"registered model name {name!r}: not usable as a path"
    return None


def _retry(fn, *args, attempts: int = 8, upsert: bool = False, **kwargs):
    """SQLite answers 'database is locked' under concurrent writers: back off and retry. `upsert`: a set-tag
    or set-alias call, which MLflow's SQL store does as read-then-insert, so two writers of the same new key
    at the same moment make one fail on the key's UNIQUE constraint (seen on a tracking server in the
    promotion race test); retried, the write finds the row and updates it, as if the two had come in turn."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps the sqlite error in its own exception types
            message = str(exc).lower()
            transient = "locked" in message or (upsert and "unique constraint failed" in message)
            if not transient or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)


class Tracker:
    def __init__(self, output_dir: Path, experiment: str, create: bool = True, tracking_uri: str | None = None):
        """Local SQLite under output_dir by default; `tracking_uri` for a remote MLflow server."""
        import mlflow

        self.mlflow = mlflow
        self.output_dir = Path(output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri or f"sqlite:///{self.output_dir / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self.client = _client_class()(self.tracking_uri, self.tracking_uri)
        existing = self.client.get_experiment_by_name(experiment)
        if existing is None and not create:
            self.experiment_id = None
        elif existing is None:
            artifacts = None if tracking_uri else (self.output_dir / "mlartifacts").as_uri()  # a server picks its own
            try:
                self.experiment_id = _retry(self.client.create_experiment, experiment, artifact_location=artifacts)
            except Exception as exc:  # another process created it first
                if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                    raise
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = existing.experiment_id
        self.run_id: str | None = None

    # ---------------------------------------------------------------- runs
    def start_run(self, run_name: str, tags: dict[str, str]) -> str:
        tags = {k: scrub_text(str(v)) for k, v in tags.items()}
        run = _retry(self.client.create_run, self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # redacted by key and by value, and the text scrubbed again: str() of an object is not walked
        items = [Param(k, scrub_text(str(v))[:6000]) for k, v in redact(params).items()]
        for start in range(0, len(items), 100):
            _retry(self.client.log_batch, self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        # +-inf is logged as it is and read back as +-inf (`stored_metric_value`); NaN is logged too (MLflow's
        # stores keep it as NaN): a re-gate must see what the live gate saw. A NaN left out once changed a
        # verdict: without `<key>_skewness` (NaN at n = 2) the gate fell back to the narrower normal bound
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for start in range(0, len(items), 500):
            _retry(self.client.log_batch, self.run_id, metrics=items[start : start + 500])

    def log_history(self, history: list[dict[str, float]]) -> None:
        for row in history:
            step = int(row.get("step", 0))
            self.log_metrics({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _retry(self.client.set_tag, self.run_id, k, scrub_text(str(v))[:5000], upsert=True)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            _retry(self.client.log_artifacts, self.run_id, str(path), artifact_path)
        else:
            _retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_json(self, obj: Any, name: str) -> str:
        """Logs `obj` with secret-looking values scrubbed (keys are the caller's: config.json comes
        key-redacted by `redact`); returns the exact text logged, e.g. for a content hash."""
        plain = json.loads(json.dumps(obj, default=str))  # objects json cannot hold become text first
        text = json.dumps(redact(plain, by_key=False), indent=1)
        _retry(self.client.log_text, self.run_id, text, name)
        return text

    def load_json(self, run_id: str, name: str) -> Any:
        import mlflow.artifacts

        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{name}", tracking_uri=self.tracking_uri) \
            if "tracking_uri" in mlflow.artifacts.load_text.__code__.co_varnames else \
            mlflow.artifacts.load_text(self.client.get_run(run_id).info.artifact_uri + "/" + name)
        return json.loads(text)

    def end_run(self, status: str) -> None:
        _retry(self.client.set_terminated, self.run_id, status)

    # ---------------------------------------------------------------- registry
    def champion(self, model_name: str, alias: str) -> tuple[str, str] | None:
        """(version, run_id) of the alias, or None when there is none yet."""
        try:
            mv = self.client.get_model_version_by_alias(model_name, alias)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower() \
                    or "does not exist" in str(exc).lower():
                return None
            raise
        return str(mv.version), mv.run_id

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def create_version(self, model_name: str, artifact_path: str, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        try:
            _retry(self.client.create_registered_model, model_name)
        except MlflowException as exc:  # a racing gate created it first: fine
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        source = f"runs:/{self.run_id}/{artifact_path}"
        mv = _retry(self.client.create_model_version, model_name, source, run_id=self.run_id, tags=tags)
        return str(mv.version)

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        _retry(self.client.set_registered_model_alias, model_name, alias, version, upsert=True)

    def attach(self, run_id: str) -> None:
        """Work on an existing run (re-gating, promoting a recorded run)."""
        self.client.get_run(run_id)  # raises when unknown
        self.run_id = run_id

    def registry_snapshot(self, model_name: str) -> dict[str, Any]:
        """Versions and aliases of a registered model (for tests: 'the registry is unchanged')."""
        try:
            rm = self.client.get_registered_model(model_name)
        except Exception:
            return {}
        versions = sorted(v.version for v in self.client.search_model_versions(f"name='{model_name}'"))
        return {"aliases": dict(rm.aliases), "versions": versions}

    def iter_runs(self, filter_string: str = "") -> Iterator[Any]:
        yield from self.client.search_runs([self.experiment_id], filter_string=filter_string)

    def latest_finished_run(self, experiment: str, tags: dict[str, str]) -> Any | None:
        """The newest FINISHED run of `experiment` carrying every tag (values: plain keys, no quotes), or None."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        where = " and ".join([f"tags.`{k}` = '{v}'" for k, v in tags.items()] + ["attributes.status = 'FINISHED'"])
        runs = _retry(self.client.search_runs, [found.experiment_id], filter_string=where,
                      order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    # ---------------------------------------------------------------- evidence and promotion (harness.promotion)
    def artifact_names(self, run_id: str, folder: str | None = None) -> set[str]:
        """Paths (relative to the run's artifact root) directly under `folder`."""
        return {a.path for a in _retry(self.client.list_artifacts, run_id, folder)}

    def load_text(self, run_id: str, name: str) -> str | None:
        """A stored artifact's exact text, or None when the run has no such artifact."""
        import tempfile

        folder = name.rsplit("/", 1)[0] if "/" in name else None
        if name not in self.artifact_names(run_id, folder):
            return None
        with tempfile.TemporaryDirectory(prefix="harness-artifact-") as tmp:
            local = _retry(self.client.download_artifacts, run_id, name, tmp)
            return Path(local).read_text(encoding="utf-8")

    def download_folder(self, run_id: str, folder: str, dst: Path) -> Path | None:
        """A stored artifact folder copied under `dst`, or None when the run has none."""
        if folder not in self.artifact_names(run_id):
            return None
        return Path(_retry(self.client.download_artifacts, run_id, folder, str(dst)))

    def download_version(self, model_name: str, version: str, dst: Path) -> Path:
        """A registered version's files (the MLflow Model folder it was created from) copied under `dst`, from
        where this store's registry says the version lives (not through MLflow's process-wide registry URI)."""
        from mlflow.artifacts import download_artifacts

        Path(dst).mkdir(parents=True, exist_ok=True)
        uri = _retry(self.client.get_model_version_download_uri, model_name, version)
        return Path(_retry(download_artifacts, artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri))

    def log_evidence(self, params: dict[str, str]) -> None:
        """Content hashes as params, which MLflow keeps immutable. Not passed through `redact`: a hex
        digest is no secret, but a value-based redactor could take it for a key."""
        from mlflow.entities import Param

        _retry(self.client.log_batch, self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def ensure_registered_model(self, model_name: str) -> bool:
        """Create the registered model if needed; True when this call created it."""
        from mlflow.exceptions import MlflowException

        try:
            _retry(self.client.create_registered_model, model_name)
            return True
        except MlflowException as exc:  # it exists (maybe a racing process created it): fine
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
            return False

    def delete_registered_model(self, model_name: str) -> None:
        _retry(self.client.delete_registered_model, model_name)

    def delete_alias(self, model_name: str, alias: str) -> None:
        _retry(self.client.delete_registered_model_alias, model_name, alias)

    def version_record(self, model_name: str, version: str) -> tuple[str, dict[str, str]]:
        """(where the version was registered from, which the registry never changes; its tags)."""
        mv = _retry(self.client.get_model_version, model_name, version)
        return str(mv.source), dict(mv.tags)

    def version_tags(self, model_name: str, version: str) -> dict[str, str]:
        return dict(_retry(self.client.get_model_version, model_name, version).tags)

    def set_version_tags(self, model_name: str, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _retry(self.client.set_model_version_tag, model_name, version, k, str(v)[:5000])

    def delete_version(self, model_name: str, version: str) -> None:
        _retry(self.client.delete_model_version, model_name, version)

    def model_tags(self, model_name: str) -> dict[str, str]:
        return dict(_retry(self.client.get_registered_model, model_name).tags)

    def set_model_tag(self, model_name: str, key: str, value: str) -> None:
        _retry(self.client.set_registered_model_tag, model_name, key, value, upsert=True)

    def delete_model_tag(self, model_name: str, key: str) -> None:
        _retry(self.client.delete_registered_model_tag, model_name, key)

    # Reads the rest of the harness needs, through this boundary: nobody else holds MLflow's client.
    def get_run(self, run_id: str):
        return _retry(self.client.get_run, run_id)

    def search_runs(self, experiment_ids: list[str], **kwargs) -> list:
        return _retry(self.client.search_runs, experiment_ids, **kwargs)

    def set_terminated(self, run_id: str, status: str) -> None:
        _retry(self.client.set_terminated, run_id, status)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list:
        return _retry(self.client.list_artifacts, run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
        return self.client.download_artifacts(run_id, path, dst)

    def get_metric_history(self, run_id: str, key: str) -> list:
        return _retry(self.client.get_metric_history, run_id, key)

    def experiment_name(self, experiment_id: str) -> str:
        return _retry(self.client.get_experiment, experiment_id).name

    def experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in _retry(self.client.search_experiments)]


def tracker_for_run(output_dir, run_id: str) -> "Tracker":
    """A tracker attached to a recorded run of `output_dir`'s SQLite store, or an input error (exit 2)."""
    from harness.errors import HarnessInputError

    db = Path(output_dir) / "mlflow.db"
    if not db.exists():
        raise HarnessInputError(f"--output-dir: no MLflow database at {db}")
    tracker = Tracker(Path(output_dir), "harness-admin", create=False)
    try:
        tracker.attach(run_id)
    except Exception:
        raise HarnessInputError(f"RUN_ID: no run {run_id!r} in {db}") from None
    return tracker

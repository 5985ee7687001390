"""MLflow tracking and the model registry. The only module that imports mlflow.

SQLite backend under the output directory (MLflow 3 deprecates the file store). Params
are immutable in MLflow, so mutable state (verdict, status) lives in tags.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator

# a key whose last word is one of these (api_key, hf_token, secret, db_password), not max_new_tokens
SECRET_KEY = re.compile(r"(^|[_-])(key|apikey|token|secret|password|passwd|credentials?)$", re.IGNORECASE)
REDACTED = "***"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = tree
    return out


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """Values of keys that look like secrets never reach MLflow."""
    return {k: (REDACTED if SECRET_KEY.search(k.rsplit(".", 1)[-1]) else v) for k, v in params.items()}


def _retry(fn, *args, attempts: int = 8, **kwargs):
    """SQLite answers 'database is locked' under concurrent writers: back off and retry."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps the sqlite error in its own exception types
            if "locked" not in str(exc).lower() or i == attempts - 1:
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
        self.client = mlflow.MlflowClient(self.tracking_uri, self.tracking_uri)
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
        run = _retry(self.client.create_run, self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in redact(params).items()]
        for start in range(0, len(items), 100):
            _retry(self.client.log_batch, self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
        for start in range(0, len(items), 500):
            _retry(self.client.log_batch, self.run_id, metrics=items[start : start + 500])

    def log_history(self, history: list[dict[str, float]]) -> None:
        for row in history:
            step = int(row.get("step", 0))
            self.log_metrics({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _retry(self.client.set_tag, self.run_id, k, str(v)[:5000])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            _retry(self.client.log_artifacts, self.run_id, str(path), artifact_path)
        else:
            _retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_json(self, obj: Any, name: str) -> None:
        _retry(self.client.log_text, self.run_id, json.dumps(obj, indent=1, default=str), name)

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
        _retry(self.client.set_registered_model_alias, model_name, alias, version)

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

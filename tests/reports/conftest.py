"""A recorded tiny sweep, shared by the MLflow-rebuild, CLI and browser tests of the reports.

Two real cells (``run_experiment`` on ``experiments/tiny.yaml`` with one training step, no
domain tasks and small eval samples: about 20 s each on an idle 2-core machine), then a parent run tagged like ``harness sweep`` tags its own
(``harness.sweep`` on the parent, ``mlflow.parentRunId`` on each cell). The cell page documents the
pipeline rendered (live, before MLflow is read back) are kept by run id in ``live_documents``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import tiny_config

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# one training step, no domain tasks, small KL sample: the report needs every section, not good numbers
FAST = {"training.max_steps": 1, "eval.domain_tasks": "[]", "eval.kl.n_prompts": 4, "eval.kl.max_new_tokens": 8,
        "eval.n_bootstrap": 20, "eval.max_new_tokens": 16}
CELLS = ({"variant": "dpo", "beta": 0.1}, {"variant": "ipo", "beta": 0.3})
SWEEP_NAME = "tiny_sweep"


@pytest.fixture(scope="session")
def recorded_sweep(tmp_path_factory, model_cache) -> SimpleNamespace:
    from harness.lifecycle import run_experiment
    from harness.tracking import Tracker

    root = tmp_path_factory.mktemp("recorded-sweep")
    fast = dict(FAST)
    if hasattr(tiny_config(root, model_cache).eval, "diversity"):  # an optional eval: off here
        fast["eval.diversity.n_prompts"] = 0
    import reports.experiment

    results, configs, live_documents = [], [], {}
    render = reports.experiment.render_experiment_report

    def keep_the_live_document(result, out_path):  # the first page of a run is the pipeline's own
        live_documents.setdefault(result["run_id"], copy.deepcopy(dict(result)))
        return render(result, out_path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reports.experiment, "render_experiment_report", keep_the_live_document)
        for overrides in CELLS:
            config = tiny_config(root, model_cache, **fast, **overrides)
            configs.append(config)
            results.append(run_experiment(config))
    output_dir = Path(configs[0].output_dir)
    tracker = Tracker(output_dir, configs[0].name)
    parent = tracker.start_run(SWEEP_NAME, tags={"harness.sweep": SWEEP_NAME, "harness.role": "sweep"})
    tracker.end_run("FINISHED")
    for r in results:
        tracker.attach(r.run_id)
        tracker.set_tags({"mlflow.parentRunId": parent, "harness.role": "cell"})
    return SimpleNamespace(output_dir=output_dir, parent=parent, results=results, configs=configs,
                           experiment=configs[0].name, live_documents=live_documents)


@pytest.fixture()
def tracker_for(recorded_sweep):
    """A Tracker on the recorded sweep's MLflow database, the way `harness report` opens it."""
    from harness.tracking import Tracker

    def make() -> "Tracker":
        return Tracker(recorded_sweep.output_dir, "harness-admin", create=False)

    return make

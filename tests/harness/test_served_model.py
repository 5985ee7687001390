"""What ships is an MLflow Model: after promotion, MLflow's own API (`mlflow.pyfunc.load_model` on
`models:/NAME@champion`, tracking URI = the test's SQLite store) loads the champion and answers, with
the adapter really applied (its answer is the rebuilt checkpoint's, not the base model's), for a
single adapter and for an iterative round's adapter stack, offline, in this process and in a fresh one."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from harness.config import RegistryConfig
from harness.promotion import (
    EVIDENCE,
    SERVED_MODEL,
    EvidenceError,
    files_under,
    load_recorded,
    log_served_model,
    promote_run,
    record_decision,
    record_evidence,
    regate,
    served_model_path,
)
from harness.tracking import Tracker
from tests.harness.fake_cells import base_config, lc_metrics

MODEL = "served-model"
REGISTRY = RegistryConfig(model_name=MODEL)


def _adapter(base_model, tokenizer, folder: Path, seed: int) -> Path:
    """A LoRA adapter on the tiny model whose B matrices are nonzero (PEFT initialises B to zero, which
    would make the adapter a no-op and the test unable to tell base from checkpoint)."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(copy.deepcopy(base_model), lora)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)
    peft_model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _record(tracker, config, folder: Path, cell: str) -> str:
    """A FINISHED run as the pipeline leaves it (harness.experiment), with `folder` as its checkpoint."""
    from harness.experiment import redacted_config, reference_baseline
    from harness.tracking import flatten

    metrics = lc_metrics(70.0, 1.0)
    tracker.start_run(cell, tags={"harness.cell": cell, "harness.status": "running"})
    tracker.log_params(flatten(config.model_dump(mode="json")))
    tracker.log_metrics(metrics)
    tracker.log_metrics({f"reference/{k}": v for k, v in reference_baseline(metrics, {}).items()})
    tracker.log_json(redacted_config(config), "config.json")
    tracker.log_json({}, "eval_errors.json")
    (folder / "harness_config.json").write_text(json.dumps(redacted_config(config)))
    tracker.log_artifact(folder, "checkpoint")
    record_decision(tracker, regate(load_recorded(tracker, tracker.run_id), None))
    record_evidence(tracker, files_under(folder))
    tracker.end_run("FINISHED")
    return tracker.run_id


def _promote(tracker, run_id):
    tracker.attach(run_id)
    recorded = load_recorded(tracker, run_id)
    return promote_run(tracker, REGISTRY, lambda champ: regate(recorded, champ), cell=recorded.cell)


def _greedy(model, tokenizer, prompts, max_new_tokens):
    from evals.generation import DecodingSettings, generate

    return [c.text for c in generate(model, tokenizer, prompts, DecodingSettings(max_new_tokens=max_new_tokens),
                                     model_fingerprint="test")]


@pytest.fixture
def setup(tmp_path, model_cache):
    from harness.models import load_model

    base = load_model("embedded:tiny", model_cache)
    config = base_config(tmp_path / "runs", model_name=MODEL, cache_dir=str(model_cache))
    return Tracker(tmp_path / "runs", "served"), config, base


def test_the_champion_loads_and_answers_through_mlflows_own_api(setup, tmp_path, model_cache):
    import mlflow

    from harness.models import load_checkpoint, load_model

    tracker, config, base = setup
    folder = _adapter(base.model, base.tokenizer, tmp_path / "adapter", seed=1)
    run_id = _record(tracker, config, folder, "served-cell")
    outcome = _promote(tracker, run_id)
    assert outcome.version == "1"

    mlflow.set_tracking_uri(tracker.tracking_uri)
    mlflow.set_registry_uri(tracker.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    answers = served.predict(["Say hi"])
    assert isinstance(answers, list) and len(answers) == 1 and isinstance(answers[0], str) and answers[0]

    # the adapter is applied: the answer is the checkpoint's, and not the base model's
    max_new = config.eval.max_new_tokens
    rebuilt = load_checkpoint(folder, load_model("embedded:tiny", model_cache).model)
    assert answers == _greedy(rebuilt, base.tokenizer, ["Say hi"], max_new)
    assert answers != _greedy(base.model, base.tokenizer, ["Say hi"], max_new)
    # a DataFrame and the max_new_tokens param, as `mlflow models serve` passes them
    import pandas as pd

    two = served.predict(pd.DataFrame({"prompt": ["Say hi", "Name a colour"]}), params={"max_new_tokens": 4})
    assert len(two) == 2 and two[0] == _greedy(rebuilt, base.tokenizer, ["Say hi"], 4)[0]

    # the version is the MLflow Model, whose checkpoint is byte for byte the one the evidence hashed
    mv = tracker.client.get_model_version(MODEL, "1")
    path = served_model_path(mv.tags["harness.served_model_sha256"])  # named by its content
    assert mv.source.endswith(f"/{path}") and mv.tags["harness.model_format"] == "mlflow-pyfunc"
    recorded = tracker.client.get_run(run_id).data.params[EVIDENCE + "checkpoint_sha256"]
    assert mv.tags["harness.checkpoint_sha256"] == recorded
    local = Path(tracker.client.download_artifacts(run_id, path, str(tmp_path / "dl")))
    from harness.promotion import tree_sha256

    assert (local / "MLmodel").is_file() and not list(local.rglob("*.pkl"))  # models from code: no pickle
    assert tree_sha256(files_under(local / "artifacts" / "checkpoint")) == recorded
    assert tree_sha256(files_under(local)) == mv.tags["harness.served_model_sha256"]


def test_an_iterative_rounds_adapter_stack_is_served_whole(setup, tmp_path, model_cache):
    """Round 2's checkpoint carries round 1's adapter (base_adapters/round-1 + adapter_stack.json): the
    served model merges it first, as harness.models.load_checkpoint does; PEFT alone would drop it."""
    import copy
    import shutil

    import mlflow

    from harness.models import load_checkpoint, write_adapter_stack

    tracker, config, base = setup
    round1 = _adapter(base.model, base.tokenizer, tmp_path / "round1", seed=1)
    merged = load_checkpoint(round1, copy.deepcopy(base.model)).merge_and_unload()
    round2 = _adapter(merged, base.tokenizer, tmp_path / "round2", seed=2)
    shutil.copytree(round1, round2 / "base_adapters" / "round-1")
    write_adapter_stack(round2, "embedded:tiny", [round1])
    run_id = _record(tracker, config, round2, "round-2")
    assert _promote(tracker, run_id).version == "1"

    mlflow.set_tracking_uri(tracker.tracking_uri)
    answers = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(["Say hi", "Count to three"])
    max_new = config.eval.max_new_tokens
    stacked = load_checkpoint(round2, copy.deepcopy(base.model))
    assert answers == _greedy(stacked, base.tokenizer, ["Say hi", "Count to three"], max_new)
    from peft import PeftModel

    last_only = PeftModel.from_pretrained(copy.deepcopy(base.model), str(round2))
    assert answers != _greedy(last_only, base.tokenizer, ["Say hi", "Count to three"], max_new)


def test_a_checkpoint_changed_after_the_run_is_not_packaged(setup, tmp_path):
    tracker, config, base = setup
    folder = _adapter(base.model, base.tokenizer, tmp_path / "adapter", seed=3)
    run_id = _record(tracker, config, folder, "edited")
    tracker.attach(run_id)
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "adapter_config.json").write_text("{}")
    tracker.log_artifact(edited / "adapter_config.json", "checkpoint")  # overwrites one stored file
    with pytest.raises(EvidenceError, match="does not match the recorded hash"):
        log_served_model(tracker)
    assert not any(name.startswith(SERVED_MODEL) for name in tracker.artifact_names(run_id))
    outcome = _promote(tracker, run_id)  # and promotion refuses it before packaging anything
    assert outcome.version is None and tracker.registry_snapshot(MODEL) == {}


def test_a_fresh_process_loads_the_champion_offline(setup, tmp_path, model_cache):
    """Nothing of this test's process helps: a new interpreter with only MLflow's API, the tracking URI
    from the environment, no network (HF offline), the base model rebuilt from the cache it is pointed at."""
    tracker, config, base = setup
    folder = _adapter(base.model, base.tokenizer, tmp_path / "adapter", seed=4)
    assert _promote(tracker, _record(tracker, config, folder, "fresh")).version == "1"
    expected = _greedy(__import__("harness.models", fromlist=["load_checkpoint"]).load_checkpoint(
        folder, __import__("harness.models", fromlist=["load_model"]).load_model("embedded:tiny", model_cache).model),
        base.tokenizer, ["Say hi"], config.eval.max_new_tokens)
    code = ("import json, mlflow; m = mlflow.pyfunc.load_model('models:/%s@champion', "
            "model_config={'cache_dir': %r}); print(json.dumps(m.predict(['Say hi'])))" % (MODEL, str(model_cache)))
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracker.tracking_uri, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as cwd:  # not the repository: harness must come from the install
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_the_head_to_head_loads_the_registered_champion_through_mlflow_and_refuses_edited_files(
        setup, tmp_path, model_cache):
    """The head-to-head's champion is the registered MLflow Model, loaded by MLflow's pyfunc API when the
    generation cache lacks its answers. Edited registered files (the run's own checkpoint untouched) are
    refused before anything loads: the packaged adapter, and the entry code that loading would run."""
    from harness.compare import champion_answers, recorded_policy, registered_answers
    from harness.models import load_checkpoint, load_model

    tracker, config, base = setup
    folder = _adapter(base.model, base.tokenizer, tmp_path / "adapter", seed=5)
    run_id = _record(tracker, config, folder, "champion")
    assert _promote(tracker, run_id).version == "1"
    champion = tracker.champion(MODEL, "champion")
    prompts = ["Name a planet nobody has asked about", "Say hi to the served model"]  # in no generation cache
    max_new = config.eval.max_new_tokens
    expected = _greedy(load_checkpoint(folder, load_model("embedded:tiny", model_cache).model), base.tokenizer,
                       prompts, max_new)
    answers = champion_answers(tracker, MODEL, champion, prompts, max_new_tokens=max_new)
    assert answers is not None and [c.text for c in answers()] == expected  # a cache miss: loaded through pyfunc
    # the pipeline's own cache, not the path the champion's run recorded (another machine's, perhaps)
    import shutil

    here = tmp_path / "this-machine-cache"
    shutil.copytree(model_cache / "models", here / "models")
    answers = champion_answers(tracker, MODEL, champion, prompts, max_new_tokens=max_new, cache_dir=here)
    assert answers is not None and [c.text for c in answers()] == expected
    assert len(list((here / "generations").glob("*.json"))) == 1
    policy = recorded_policy(tracker, run_id, tmp_path / "run")
    fresh = prompts[:1] + ["Count the moons of a planet nobody has asked about"]
    first = registered_answers(tracker, MODEL, "1", policy, fresh, max_new_tokens=max_new, workdir=tmp_path / "a")
    assert first.source == "registered model" and first.completions[0].text == expected[0]
    # generated once: the pipeline's next ask is served from the cache, by the checkpoint's fingerprint
    again = registered_answers(tracker, MODEL, "1", policy, fresh, max_new_tokens=max_new, workdir=tmp_path / "b")
    assert again.source == "cache" and again.completions == first.completions

    # packaging the run again (a second promotion) writes a new content-named folder beside the first, so the
    # files under version 1 do not change and it still checks out
    tracker.attach(run_id)
    first_path = tracker.version_record(MODEL, "1")[0].rsplit("/", 1)[-1]
    second_path, _ = log_served_model(tracker)
    assert second_path != first_path and {first_path, second_path} <= tracker.artifact_names(run_id)
    assert registered_answers(tracker, MODEL, "1", policy, fresh, max_new_tokens=max_new,
                              workdir=tmp_path / "c").source == "cache"

    marker = tmp_path / "entry-code-ran"
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "served_model_entry.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n" + (Path(__import__("harness").__file__).parent
                                                    / "served_model_entry.py").read_text())
    tracker.log_artifact(hostile / "served_model_entry.py", first_path)  # overwrites version 1's entry file
    with pytest.raises(EvidenceError, match="model folder does not match the hash its source"):
        champion_answers(tracker, MODEL, champion, ["another prompt"], max_new_tokens=max_new)()
    assert not marker.exists()  # refused before MLflow ran it

    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "adapter_config.json").write_text("{}")
    tracker.log_artifact(edited / "adapter_config.json", f"{first_path}/artifacts/checkpoint")
    with pytest.raises(EvidenceError, match="packaged checkpoint does not match") as refused:
        champion_answers(tracker, MODEL, champion, prompts, max_new_tokens=max_new)()  # even with answers cached
    assert f"{MODEL} version 1" in str(refused.value)


def test_a_registered_folder_must_hash_to_the_name_of_its_source_or_to_its_older_tag(tmp_path):
    from harness.promotion import served_model_problem, tree_sha256

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    digest = tree_sha256(files_under(folder))
    source = f"runs:/abc/{served_model_path(digest)}"
    assert served_model_problem(folder, source, None) is None
    assert served_model_problem(folder, f"runs:/abc/{served_model_path('0' * 64)}", digest) is not None  # named wins
    # versions packaged under a plain `model` path (before content naming) check against their tag, and a
    # version with neither a content name nor a tag is refused: its entry code cannot be checked
    assert served_model_problem(folder, "runs:/abc/model", digest) is None
    assert "does not match" in served_model_problem(folder, "runs:/abc/model", "f" * 64)
    assert "no hash" in served_model_problem(folder, "runs:/abc/model", None)
    (folder / "served_model_entry.py").write_text("import os\n")  # a file added after packaging
    assert "edited after packaging" in served_model_problem(folder, source, None)

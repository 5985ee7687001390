"""A hub model is rebuilt on the commit its run loaded, not on whatever the hub's branch points to later.
Offline: a Hugging Face cache laid out by hand (refs/main naming a commit, snapshots/<commit>/ holding the
tiny model's files, a second commit with other weights), read by transformers with HF_HUB_OFFLINE=1 in a
fresh interpreter (huggingface_hub reads its environment when imported)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40

CHECK = r'''
import json, sys
from pathlib import Path
from harness.config import ExperimentConfig
from harness.experiment import load_base
from harness.models import load_model
from harness.served_model import model_config_from_run

cache, refs = Path(sys.argv[1]), Path(sys.argv[2])
config = ExperimentConfig.model_validate({"model": {"name": "harness-test/tiny"}, "variant": "dpo", "beta": 0.1,
                                         "cache_dir": str(cache)})
first, recorded = load_base(config)  # the hub's main: commit a
refs.write_text("b" * 40)  # the hub moves on
pinned = load_model("harness-test/tiny", cache, revision=recorded.model.revision)
latest = load_model("harness-test/tiny", cache)
served = model_config_from_run(recorded.model_dump(mode="json"))
weight = lambda m: float(next(m.model.parameters()).detach().flatten()[0])
print(json.dumps({"first": first.revision, "recorded": recorded.model.revision, "pinned": pinned.revision,
                  "latest": latest.revision, "same_fingerprint": pinned.fingerprint == first.fingerprint,
                  "moved_fingerprint": latest.fingerprint != first.fingerprint, "served_revision": served["revision"],
                  "weights": [weight(first), weight(pinned), weight(latest)]}))
'''


def test_a_hub_model_is_rebuilt_on_the_commit_its_run_loaded(tmp_path, model_cache):
    from harness.models import tiny_model_dir

    hub = tmp_path / "hub" / "models--harness-test--tiny"
    for commit, scale in ((COMMIT_A, 1.0), (COMMIT_B, 2.0)):
        snapshot = hub / "snapshots" / commit
        shutil.copytree(tiny_model_dir(model_cache), snapshot)
        if scale != 1.0:  # commit b: other weights, same architecture
            from safetensors.torch import load_file, save_file

            weights = load_file(snapshot / "model.safetensors")
            save_file({k: v * scale for k, v in weights.items()}, snapshot / "model.safetensors", metadata={"format": "pt"})
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(COMMIT_A)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "cache"), str(hub / "refs" / "main")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == out["recorded"] == out["pinned"] == out["served_revision"] == COMMIT_A
    assert out["latest"] == COMMIT_B and out["moved_fingerprint"] and out["same_fingerprint"]
    first, pinned, latest = out["weights"]
    assert first == pinned and latest == torch.tensor(2.0 * first).item()

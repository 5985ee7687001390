import json

import pytest

from harness.config import validate_config
from harness.errors import DataError
from harness.preference_data import load_preference_data


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

"""Production thumbs feedback: age and version filters, duplicates, contradictions, up/down into pairs."""
import json
from datetime import datetime, timezone

import pytest

from harness.config import FeedbackConfig, validate_config
from harness.data.feedback import feedback_pairs, select_feedback
from harness.data.loading import load_preference_data
from harness.data.rows import read_rows
from harness.errors import DataError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _log(tmp_path, rows):
    path = tmp_path / "thumbs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(prompt, response, thumbs, day, version="v2"):
    return {"prompt": prompt, "response": response, "thumbs": thumbs,
            "timestamp": f"2026-11-{day:02d}T10:00:00Z", "model_version": version}


LOG = [
    _row("p1", "good answer", "up", 26),
    _row("p1", "bad answer", "down", 25),
    _row("p1", "good answer", "up", 24),           # the same vote again: a duplicate
    _row("p2", "old answer", "up", 1),             # 26 days old
    _row("p2", "older answer", "down", 2),         # 25 days old
    _row("p3", "v1 answer", "up", 26, "v1"),       # another model version
    _row("p4", "only up", "up", 26),               # no down vote on p4: KTO row, no pair
    _row("p5", "flip-flop", "up", 26),             # voted up and down: says nothing
    _row("p5", "flip-flop", "down", 26),
    _row("p6", "a", "up", 27), _row("p6", "b", "down", 27), _row("p6", "c", "down", 27),
]


def test_age_version_duplicates_and_contradictions_are_counted(tmp_path):
    rows = read_rows(str(_log(tmp_path, LOG)))
    sel = select_feedback(rows, FeedbackConfig(max_age_days=7, model_versions=["v2"]), now=NOW)
    assert sel.dropped == {"feedback_too_old": 2, "feedback_other_model_version": 1, "feedback_duplicate": 1,
                           "feedback_contradictory": 2}
    kept = [(r["prompt"], r["response"], r["label"]) for _, _, r in sel.rows]
    assert kept == [("p1", "good answer", True), ("p1", "bad answer", False), ("p4", "only up", True),
                    ("p6", "a", True), ("p6", "b", False), ("p6", "c", False)]
    # without the filters the old and v1 rows stay
    loose = select_feedback(rows, FeedbackConfig(), now=NOW)
    assert "feedback_too_old" not in loose.dropped and len(loose.rows) == len(sel.rows) + 3


def test_up_and_down_on_one_prompt_become_pairs(tmp_path):
    sel = select_feedback(read_rows(str(_log(tmp_path, LOG))), FeedbackConfig(max_age_days=7, model_versions=["v2"]),
                          now=NOW)
    pairs = feedback_pairs(sel)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for _, _, r in pairs.rows] == [
        ("p1", "good answer", "bad answer"), ("p6", "a", "b")]
    # p4's lone up and p6's second down have no partner
    assert pairs.dropped["feedback_without_opposite_vote"] == 2
    assert pairs.dropped["feedback_duplicate"] == 1  # earlier counts carried along


def _config(tmp_path, source, variant, **feedback):
    return validate_config({"model": {"name": "embedded:tiny"}, "variant": variant, "output_dir": str(tmp_path / "o"),
                            "data": {"source": str(source), "eval_fraction": 0,
                                     "feedback": {"now": NOW.isoformat(), **feedback}}})


def test_loader_gives_pairs_to_dpo_and_rows_to_kto(tmp_path):
    source = _log(tmp_path, LOG)
    dpo = load_preference_data(_config(tmp_path, source, "dpo", max_age_days=7, model_versions=["v2"]))
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo.train) == [
        ("a", "b"), ("good answer", "bad answer")]
    assert dpo.dropped["feedback_too_old"] == 2 and dpo.dropped["feedback_without_opposite_vote"] == 2
    kto = load_preference_data(_config(tmp_path, source, "kto", max_age_days=7, model_versions=["v2"]))
    assert kto.shape == "unpaired" and len(kto.train) == 6
    assert sum(r["label"] for r in kto.train) == 3 and kto.dropped["feedback_contradictory"] == 2


def test_every_row_too_old_is_a_clear_data_error(tmp_path):
    source = _log(tmp_path, LOG[3:5])
    with pytest.raises(DataError, match="feedback_too_old: 2"):
        load_preference_data(_config(tmp_path, source, "kto", max_age_days=7))


def test_missing_or_bad_timestamp_names_file_row_and_field(tmp_path):
    rows = [_row("p1", "x", "up", 26), {"prompt": "p2", "response": "y", "thumbs": "down"},
            {**_row("p3", "z", "down", 26), "timestamp": "yesterday"}]
    source = _log(tmp_path, rows)
    with pytest.raises(DataError) as info:
        load_preference_data(_config(tmp_path, source, "kto", max_age_days=7))
    text = str(info.value) + "\n".join(map(str, getattr(info.value, "details", []) or []))
    assert "row 2" in text and "'timestamp'" in text
    assert "row 3" in text and "yesterday" in text


def test_cli_reports_bad_feedback_with_exit_2(tmp_path, capsys):
    from harness.cli import main

    source = _log(tmp_path, [{"prompt": "p2", "response": "y", "thumbs": "down"}])
    cfg = tmp_path / "fb.yaml"
    cfg.write_text(f"model: {{name: embedded:tiny}}\nvariant: kto\noutput_dir: {tmp_path / 'o'}\n"
                   f"data: {{source: {source}, feedback: {{max_age_days: 3}}}}\n")
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "thumbs.jsonl" in err and "timestamp" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "mlflow.db").exists()  # nothing recorded for bad input


def test_junk_outside_the_window_does_not_stop_the_run(tmp_path):
    junk = [{"prompt": "old", "response": "x", "thumbs": "meh", "timestamp": "2020-01-01T00:00:00Z",
             "model_version": "v2"},
            {"prompt": "v0", "thumbs": None, "timestamp": "2026-11-26T00:00:00Z", "model_version": "v0"}]
    source = _log(tmp_path, LOG + junk)
    data = load_preference_data(_config(tmp_path, source, "kto", max_age_days=7, model_versions=["v2"]))
    assert data.dropped["feedback_too_old"] == 3 and data.dropped["feedback_other_model_version"] == 2
    assert "feedback as of 2026-11-27T12:00:00+00:00" in data.source  # the window is recorded with the data

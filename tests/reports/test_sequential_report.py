"""The cell page's sequential picture (reports/sequential.py) from the `sequential.json` a run logs: the
stop it draws is the last look's, and an artifact edited or truncated by hand renders instead of crashing
the report (a page rebuilt from MLflow reads whatever the artifact holds)."""
from reports.sequential import sequential_plots, sequential_rows


def _sequence(looks: list[dict]) -> dict:
    return {"metric": "winrate/win_rate_pct", "method": "betting", "decides": True, "max_n": 24, "status": "pass",
            "rule": {"name": "raw_beats_reference", "kind": "min", "threshold": 50.0, "confidence": 0.95},
            "looks": looks}


def test_the_plot_marks_where_the_eval_stopped_and_the_table_reads_the_last_look():
    looks = [{"n": 8, "low": 31.0, "high": 90.0, "status": "continue"},
             {"n": 16, "low": 52.5, "high": 88.0, "status": "pass"}]
    raw = {"winrate": [_sequence(looks)]}
    (plot,) = sequential_plots(raw)
    assert "stopped at 16" in plot and "prompts judged" in plot
    (row,) = sequential_rows(raw)
    assert (row["n"].text, row["max_n"].text, row["low"].text, row["status"]) == ("16", "24", "52.5", "pass")
    assert row["planned"] is None  # planned for its own budget
    # a rerun with a raised budget continues the first run's test: the row says so
    (row,) = sequential_rows({"winrate": [_sequence(looks) | {"planned_n": 16}]})
    assert row["planned"].text == "16"


def test_a_hand_edited_artifact_renders_without_a_crash():
    looks = [{"n": None, "low": "x", "status": "continue"}, {"low": 40.0}, {"n": 12, "high": None}, {"n": "9"}]
    (plot,) = sequential_plots({"winrate": [_sequence(looks)], "domain_arith_mc": "not a list"})
    assert "stopped at 12" in plot  # the one look with a readable n
    assert sequential_plots({"winrate": [_sequence([{"n": None}])]})[0].count("stopped at 0") == 1

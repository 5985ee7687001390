"""Sweeps: expansion, sharing, resume after SIGKILL, and the Ray runner."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.errors import ConfigError
from harness.pareto import pareto_front
from harness.sweep import CellOutcome, load_sweep, run_sweep, summary_frame
from tests.conftest import REPO

SWEEP = REPO / "experiments" / "tiny_sweep.yaml"
# smaller than the shipped tiny sweep so that the kill/resume and Ray tests stay quick
FAST = ["training.max_steps=2", "eval.n_prompts=8", "eval.kl.n_prompts=4", "eval.domain_limit=8"]


def test_the_grid_expands_per_variant_with_stable_keys(tmp_path):
    sweep, cells = load_sweep(SWEEP, [f"output_dir={tmp_path}"])
    assert [(c.variant, c.beta) for c in cells] == [("dpo", 0.05), ("dpo", 0.2), ("simpo", 2.5), ("kto", 0.1)]
    assert cells[2].variant_params == {"gamma": 1.375}
    assert all(c.output_dir == tmp_path for c in cells)
    _, again = load_sweep(SWEEP, [f"output_dir={tmp_path / 'elsewhere'}"])
    assert [c.cell_key() for c in cells] == [c.cell_key() for c in again]


def test_bad_cells_are_reported_together_with_their_grid_entry(tmp_path):
    bad = tmp_path / "bad.yaml"
    raw = SWEEP.read_text().replace("beta: [0.05, 0.2]", "beta: [-1.0]").replace("gamma: [1.375]", "gamma: [-2]")
    bad.write_text(raw)
    with pytest.raises(ConfigError) as info:
        load_sweep(bad)
    message = str(info.value)
    assert "grid.0" in message and "beta" in message and "grid.1" in message and "gamma" in message


def test_pareto_front_keeps_cells_nobody_beats_on_both_axes():
    def m(lc, kl):
        return {"winrate/lc_win_rate_pct": lc, "kl/seq_kl_k3": kl}

    # a: beaten by d (same LC, less KL); c: beaten by the reference itself (LC 50 at KL 0); e: NaN, left out
    cells = {"a": m(60, 1.0), "b": m(55, 0.5), "c": m(50, 2.0), "d": m(60, 0.9), "e": m(float("nan"), 0.1)}
    assert pareto_front(cells) == {"b", "d"}
    rows = [CellOutcome(k, "dpo", 0.1, 0, None, "BLOCK", v, None, False) for k, v in cells.items()]
    assert summary_frame(rows).set_index("cell")["pareto_lc_vs_kl"].to_dict() == {
        "a": False, "b": True, "c": False, "d": True, "e": False}


def test_the_sweep_page_draws_the_same_front_as_the_summary():
    """One definition of the front (issue 15): the page's list is harness.sweep's set, in cell order."""
    from reports.sweep import pareto_front as page_front

    cells = [{"cell": k, "metrics": {"winrate/lc_win_rate_pct": lc, "kl/seq_kl_k3": kl}}
             for k, lc, kl in (("a", 60, 1.0), ("b", 55, 0.5), ("c", 49, 0.01), ("d", 60, 0.9))]
    assert page_front(cells) == ["b", "d"]
    assert set(page_front(cells)) == pareto_front({c["cell"]: c["metrics"] for c in cells})


def _children(db):
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "select r.run_uuid, r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'harness.cell'").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory, model_cache):
    """A sweep killed with SIGKILL after its first cell finished, then rerun to completion."""
    out = tmp_path_factory.mktemp("sweep-kill")
    sets = [f"output_dir={out}", f"cache_dir={model_cache}", *FAST]
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(SWEEP)] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = out / "mlflow.db"
    deadline = time.time() + 600
    finished_before = []
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                finished_before = [r for r in _children(db) if r[1] == "FINISHED"]
            except sqlite3.OperationalError:
                finished_before = []
            if finished_before:
                break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    assert finished_before, "no cell finished in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    sweep, cells = load_sweep(SWEEP, sets)
    result = run_sweep(sweep, cells, progress=lambda m: None)
    return out, cells, finished_before, result


def test_resume_after_sigkill_finishes_every_cell_exactly_once(resumed_sweep):
    out, cells, finished_before, result = resumed_sweep
    rows = _children(out / "mlflow.db")
    finished = [cell for _, status, cell in rows if status == "FINISHED"]
    assert sorted(finished) == sorted(c.cell_key() for c in cells)  # each cell once, no duplicates
    assert all(status in ("FINISHED", "FAILED", "KILLED") for _, status, _ in rows)  # nothing left "running"
    # the cell that had finished before the kill was read back, not recomputed
    done_id, _, done_cell = finished_before[0]
    outcome = next(c for c in result.cells if c.cell == done_cell)
    assert outcome.reused and outcome.run_id == done_id
    # ...with the measurements a live cell has (evals.metrics.measurements), so summary.csv has the same columns
    # for it: no data counters, baselines or training curves
    live_keys = set().union(*(c.metrics for c in result.cells if not c.reused))
    assert outcome.metrics and set(outcome.metrics) <= live_keys, set(outcome.metrics) - live_keys
    assert all(c.verdict in ("PROMOTE", "BLOCK") for c in result.cells)


def test_the_summary_table_is_logged_as_csv_and_parquet(resumed_sweep):
    import pandas as pd

    out, cells, _, result = resumed_sweep
    frame = pd.read_csv(result.summary_csv)
    assert list(frame["cell"]) == [c.cell_key() for c in cells]
    # the front as harness.sweep.pareto_front defines it (empty when no cell has an identified LC beating 50)
    front = pareto_front({c.cell: c.metrics for c in result.cells})
    assert list(frame["pareto_lc_vs_kl"]) == [c.cell_key() in front for c in cells]
    assert set(frame["selection"]) <= {"selected", "passed-not-selected", "blocked", "failed"}
    assert (frame["selection"] == "selected").sum() <= 1
    assert (result.summary_csv.parent / "summary.parquet").exists()
    html = open(result.report, encoding="utf-8").read()
    assert all(c.cell_key() in html for c in cells)


def test_second_invocation_reuses_every_cell_and_shared_caches_exist(resumed_sweep, model_cache):
    out, cells, _, _ = resumed_sweep
    sweep, cells = load_sweep(SWEEP, [f"output_dir={out}", f"cache_dir={model_cache}", *FAST])
    again = run_sweep(sweep, cells, progress=lambda m: None)
    assert all(c.reused for c in again.cells)
    assert len(list((model_cache / "ref_logps").glob("*.json"))) >= 1  # shared by both DPO cells
    assert len(list((model_cache / "reference_domain").glob("*.json"))) == 1


def test_ray_runner_gives_the_same_verdicts_as_the_local_runner(resumed_sweep, tmp_path, model_cache):
    pytest.importorskip("ray")
    from harness.cli import main

    _, _, _, local = resumed_sweep
    code = main(["sweep", str(SWEEP), "--runner", "ray", "--json", "--set", f"output_dir={tmp_path}",
                 "--set", f"cache_dir={model_cache}", *[a for s in FAST for a in ("--set", s)]])
    assert code == 0
    # main printed the JSON: read it back from the summary instead of capturing stdout through Ray's noise
    import pandas as pd

    ray_rows = pd.read_csv(next((tmp_path / "sweeps").glob("*/summary.csv")))
    assert dict(zip(ray_rows["cell"], ray_rows["verdict"])) == {c.cell: c.verdict for c in local.cells}
    assert not ray_rows["reused"].any()


# ---------------------------------------------------------------------------- names, grids, select (exit 2)


def _write_sweep(path, out, **changes):
    import yaml

    raw = {"name": "fake_sweep",
           "base": {"output_dir": str(out), "model": {"name": "embedded:tiny"}, "eval": {"domain_tasks": []},
                    "gate": {"rules": [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "min": 50}]},
                    "registry": {"model_name": "fake-sweep-model"}},
           "grid": [{"variant": "dpo", "beta": [0.05, 0.2]}, {"variant": "kto", "beta": [0.1]}]}
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ""])
def test_a_sweep_name_that_is_a_path_is_refused(tmp_path, capsys, name):
    from harness.cli import main

    out = tmp_path / "out"
    assert main(["sweep", str(_write_sweep(tmp_path / "s.yaml", out, name=name))]) == 2
    assert "name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not out.exists()


def test_a_sweep_folder_that_resolves_outside_output_dir_is_refused(tmp_path, monkeypatch, capsys):
    """A `sweeps` symlink pointing elsewhere: the summary would land outside output_dir."""
    from harness.cli import main

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sweeps").symlink_to(elsewhere)
    monkeypatch.setattr("harness.sweep.run_cell", lambda *a: pytest.fail("no cell may run"))
    assert main(["sweep", str(_write_sweep(tmp_path / "s.yaml", out))]) == 2
    assert "must stay inside" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    ({"grid": []}, "grid"),
    ({"seeds": []}, "seeds"),
    ({"grid": [{"variant": "simpo", "variant_params": {"gamma": []}}]}, "no values to try for gamma"),
    ({"select": {"metric": "winrate/lc_win_rate"}}, "did you mean"),
    ({"select": {"metric": "length/ratio_tokens"}}, "no declared direction"),
    ({"select": {"statistic": "ci_low"}}, "select.statistic"),
    ({"grid": [{"variant": "dpo", "beta": [True]}]}, "not booleans"),  # YAML `true` once became beta 1.0
    ({"seeds": [True]}, "not booleans"),
    ({"grid": [{"variant": "dpo", "beta": [float("nan")]}]}, "grid.0.beta"),
    ({"base": {"model": {"name": "embedded:tiny"}, "variant_params": 5}}, "variant_params"),  # once a TypeError
])
def test_an_empty_grid_or_a_bad_select_is_a_config_error(tmp_path, capsys, change, message):
    from harness.cli import main

    assert main(["sweep", str(_write_sweep(tmp_path / "s.yaml", tmp_path / "out", **change))]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- one champion per sweep

# lc (stderr): A passes, B passes with a wider interval, C passes alone (54 - 1.645*2 = 50.7) but not with
# its Bonferroni share of 3 cells (54 - 2.128*2 = 49.7): the sweep must set gate.family_size on its cells
CHOSEN = {"dpo-0.05": {"winrate/lc_win_rate_pct": 60.0, "winrate/lc_win_rate_pct_stderr": 2.0},
          "dpo-0.2": {"winrate/lc_win_rate_pct": 66.0, "winrate/lc_win_rate_pct_stderr": 6.0},
          "kto-0.1": {"winrate/lc_win_rate_pct": 54.0, "winrate/lc_win_rate_pct_stderr": 2.0}}


def _fake_sweep(tmp_path, monkeypatch, **changes):
    from tests.harness.fake_cells import fake_run_cell

    monkeypatch.setenv("FAKE_CELLS", json.dumps(CHOSEN))
    monkeypatch.setattr("harness.sweep.run_cell", fake_run_cell)
    out = tmp_path / "out"
    path = _write_sweep(tmp_path / "s.yaml", out, **changes)
    return out, path


def _run(path):
    sweep, cells = load_sweep(path)
    return run_sweep(sweep, cells, progress=lambda m: None)


@pytest.mark.parametrize("statistic, winner", [("bound", "dpo-0.05"), ("point", "dpo-0.2")])
def test_a_sweep_promotes_exactly_one_cell_the_best_passing_by_select(tmp_path, monkeypatch, statistic, winner):
    import pandas as pd

    from harness.tracking import Tracker

    out, path = _fake_sweep(tmp_path, monkeypatch, select={"statistic": statistic})
    result = _run(path)
    by = {f"{c.variant}-{c.beta:g}": c for c in result.cells}
    loser = "dpo-0.2" if winner == "dpo-0.05" else "dpo-0.05"
    assert [by[k].verdict for k in ("dpo-0.05", "dpo-0.2", "kto-0.1")] == ["PROMOTE", "PROMOTE", "BLOCK"]
    assert "98.33%" in by["kto-0.1"].first_failure  # the cell gated at alpha/3
    assert (by[winner].selection, by[loser].selection, by["kto-0.1"].selection) == (
        "selected", "passed-not-selected", "blocked")
    tracker = Tracker(out, "fake_sweep")
    snapshot = tracker.registry_snapshot("fake-sweep-model")
    assert snapshot["versions"] == [1] and snapshot["aliases"] == {"champion": 1}  # exactly one
    assert tracker.champion("fake-sweep-model", "champion")[1] == by[winner].run_id
    assert tracker.version_tags("fake-sweep-model", "1")["harness.validated"] == "true"
    tags = {k: tracker.client.get_run(c.run_id).data.tags for k, c in by.items()}
    assert all(t["harness.family_size_seen"] == "3" for t in tags.values())
    assert tags[winner]["harness.selection"] == "selected" and tags[loser]["harness.selection"] == "passed-not-selected"
    assert tags[loser].get("harness.promoted") != "true"
    frame = pd.read_csv(result.summary_csv).set_index("run_id")
    assert frame.loc[by[winner].run_id, "selection"] == "selected"
    assert frame.loc[by[loser].run_id, "selection"] == "passed-not-selected"
    parent = tracker.client.get_run(result.parent_run_id).data.tags
    assert parent["harness.select.winner_run_id"] == by[winner].run_id
    assert parent["harness.select.promotion"] == "promoted as version 1"
    assert result.selection["rule"].startswith("highest")
    html = open(result.report, encoding="utf-8").read()
    assert 'id="selection"' in html and by[winner].cell in html and result.selection["rule"] in html
    # a rerun reuses every cell and promotes nothing more
    again = _run(path)
    assert all(c.reused for c in again.cells)
    assert tracker.registry_snapshot("fake-sweep-model")["versions"] == [1]
    assert again.selection["winner_run_id"] == by[winner].run_id


def test_a_resumed_sweep_selects_over_all_its_cells_and_promotes_once(tmp_path, monkeypatch, capsys):
    """The best cell crashes the first time: nothing is selected, and `harness promote` of a passing cell is
    refused (its sweep has not selected yet: promoting it would leave two versions once the rerun selects the
    best). The rerun selects over all cells and promotes once; promoting the passed-not-selected cell is then
    refused, also after its selection tag is edited to "selected" (the selection is an immutable param)."""
    from harness.cli import main
    from harness.tracking import Tracker

    out, path = _fake_sweep(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_CELLS_FAIL", "dpo-0.05")  # the best cell fails the first time
    first = _run(path)
    tracker = Tracker(out, "fake_sweep")
    assert first.selection is None and tracker.registry_snapshot("fake-sweep-model") == {}  # nothing until all ran
    assert {c.selection for c in first.cells} == {"pending"}
    passing = next(c for c in first.cells if c.verdict == "PROMOTE")
    capsys.readouterr()
    assert main(["promote", passing.run_id, "--output-dir", str(out)]) == 1
    assert "has not selected a cell yet" in capsys.readouterr().err
    assert tracker.registry_snapshot("fake-sweep-model") == {}
    monkeypatch.delenv("FAKE_CELLS_FAIL")
    second = _run(path)
    by = {f"{c.variant}-{c.beta:g}": c for c in second.cells}
    assert by["dpo-0.2"].reused and not by["dpo-0.05"].reused
    assert by["dpo-0.05"].selection == "selected"  # selected over the reused cells too
    assert tracker.registry_snapshot("fake-sweep-model")["versions"] == [1]
    loser = by["dpo-0.2"].run_id
    tracker.client.set_tag(loser, "harness.selection", "selected")  # an edited tag changes nothing
    assert main(["promote", loser, "--output-dir", str(out)]) == 1
    assert f"selected another cell (run {by['dpo-0.05'].run_id})" in capsys.readouterr().err
    _run(path)
    assert tracker.registry_snapshot("fake-sweep-model")["versions"] == [1]


def _driver(out, path, extra_env, *args):
    env = {**os.environ, "FAKE_CELLS": json.dumps(CHOSEN), "OMP_NUM_THREADS": "1", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "tests.harness.fake_cells", "sweep", str(path), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_live_sweep_makes_a_second_exit_2_naming_its_pid_and_a_killed_one_resumes(tmp_path):
    """Two real processes: the first holds the sweep lock mid-way (its second cell waits); the second
    `harness sweep` of the same sweep exits 2 naming the first's pid. The first is then SIGKILLed: its
    lock dies with it, and a rerun resumes, reusing the cell that had finished."""
    out = tmp_path / "out"
    path = _write_sweep(tmp_path / "s.yaml", out)
    log, hold = tmp_path / "cells.log", tmp_path / "release"
    first = _driver(out, path, {"FAKE_CELLS_LOG": str(log), "FAKE_CELLS_HOLD": str(hold)})
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not (log.exists() and log.read_text().strip()):
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()
    assert log.read_text().strip(), "the first cell never finished"
    second = subprocess.run([sys.executable, "-m", "harness.cli", "sweep", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid}" in second.stderr and "already running" in second.stderr
    assert first.poll() is None  # the live sweep was left alone
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    finished_before = log.read_text().split()
    third = _driver(out, path, {}, "--json")
    stdout, stderr = third.communicate(timeout=300)
    assert third.returncode == 0, stderr
    result = json.loads(stdout)
    reused = {c["cell"] for c in result["cells"] if c["reused"]}
    assert reused == set(finished_before)
    rows = _children(out / "mlflow.db")
    finished = sorted(cell for _, status, cell in rows if status == "FINISHED")
    assert finished == sorted(c["cell"] for c in result["cells"])  # each cell once
    assert result["selection"]["promotion"] == "promoted as version 1"

"""The catalog of malformed inputs (tests/malformed/catalog.yaml), one case per input, through the real CLI.

Each case must exit 2 (or the `exit` it declares: 0 for edge-case inputs that are valid and must load),
print no traceback, name its place (file, row, field or config path) and leave the MLflow registry and
the output directory exactly as they were: bad input is refused before any run is created or any
training starts. A case marked `pending` (a gap owned by another module) runs as a strict xfail.
"""
import argparse
import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "tests" / "malformed"
TINY = REPO / "experiments" / "tiny.yaml"
CASES = yaml.safe_load((HERE / "catalog.yaml").read_text())["cases"]
MODEL_NAME = "po-harness-tiny"  # experiments/tiny.yaml registry.model_name


def _expand(text: str, case: dict) -> str:
    return text.replace("{input}", str(HERE / case["input"]) if case.get("input") else "").replace("{here}", str(HERE))


def _state(out: Path) -> dict:
    """The registry as stored (models, versions, aliases, runs), the database bytes, and every file under out."""
    db = out / "mlflow.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        def q(sql):
            return sorted(con.execute(sql).fetchall())

        registry = {"models": q("select name from registered_models"),
                    "versions": q("select name, version, run_id from model_versions"),
                    "aliases": q("select name, alias, version from registered_model_aliases"),
                    "runs": q("select run_uuid, status from runs")}
    finally:
        con.close()
    return {"registry": registry, "db_sha256": hashlib.sha256(db.read_bytes()).hexdigest(),
            "files": sorted(str(p.relative_to(out)) for p in out.rglob("*"))}


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> Path:
    """An mlflow.db that already holds a champion: what a refused input must not touch."""
    import mlflow

    folder = tmp_path_factory.mktemp("seeded-registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    exp = client.create_experiment("tiny", artifact_location=(folder / "mlartifacts").as_uri())
    run = client.create_run(exp, run_name="champion")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, f"runs:/{run.info.run_id}/checkpoint", run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return folder / "mlflow.db"


@pytest.fixture
def out(tmp_path, seeded_db) -> Path:
    out = tmp_path / "runs"
    out.mkdir()
    shutil.copy(seeded_db, out / "mlflow.db")
    return out


def _run_argv(case: dict, out: Path, model_cache: Path) -> list[str]:
    sets = [f"output_dir={out}", f"cache_dir={model_cache}"]
    if case.get("data"):
        sets.append(f"data.source={_expand('{input}', case)}")
    sets += [_expand(s, case) for s in case.get("set", [])]
    config = str(TINY) if case.get("data") or case.get("config") else _expand("{input}", case)
    return ["run", config, *[x for s in sets for x in ("--set", s)]]


def _data_check(argv: list[str]) -> int:
    subs = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "data" in subs.choices:
        return cli.main(["data", "check", *argv])
    from harness.data_commands import main  # until cli.py registers `data`

    return main(["check", *argv])


def _referenced(case: dict) -> set[str]:
    """Files a case names besides its input ({here}/NAME in its sets or argv)."""
    return {m for s in [*case.get("set", []), *case.get("argv", [])] for m in re.findall(r"\{here\}/([^/\s]+)", s)}


def test_the_catalog_has_a_case_for_every_input_and_at_least_20():
    assert len(CASES) >= 20 and len({c["id"] for c in CASES}) == len(CASES)
    inputs = {c["input"] for c in CASES if c.get("input")} | {n for c in CASES for n in _referenced(c)}
    inputs.discard("does_not_exist.jsonl")
    on_disk = {p.name for p in HERE.iterdir() if p.name != "catalog.yaml"}
    assert on_disk == inputs, on_disk ^ inputs
    assert all((HERE / i).exists() for i in inputs)


def _params(cases: list[dict]) -> list:
    return [pytest.param(c, id=c["id"], marks=[pytest.mark.xfail(strict=True, reason=c["pending"])]
                         if c.get("pending") else []) for c in cases]


@pytest.mark.parametrize("case", _params(CASES))
def test_malformed_input_exits_2_naming_the_place_and_leaves_the_registry_unchanged(case, out, model_cache, capsys):
    before = _state(out)
    assert [a[:2] for a in before["registry"]["aliases"]] == [(MODEL_NAME, "champion")]  # a champion to protect
    argv = [_expand(a, case) for a in case["argv"]] if case.get("argv") else _run_argv(case, out, model_cache)
    try:
        code = cli.main(argv)
    except RecursionError as exc:  # what a pending case may still do: fail it as a case, not as a crash
        pytest.fail(f"RecursionError escaped: {str(exc)[:200]}")
    captured = capsys.readouterr()
    err = captured.err
    expected = case.get("exit", 2)
    assert code == expected, err
    assert "Traceback" not in err
    if expected == 2:
        assert "\nerror: " in "\n" + err
    else:  # a valid input: loads with no error; its expectations are read from the output
        assert "\nerror: " not in "\n" + err, err
        err = captured.out + err
    missing = [n for n in (_expand(e, case) for e in case["expect"]) if n not in err]
    assert not missing, f"{missing} not in: {err}"
    leaked = [s for s in case.get("absent", []) if s in captured.out + captured.err]
    assert not leaked, f"{leaked} printed: {err}"
    assert _state(out) == before
    if case.get("data"):  # `harness data check` refuses the same input, naming the same place
        sets = [f"cache_dir={model_cache}", *(_expand(s, case) for s in case.get("set", []))]
        code = _data_check([_expand("{input}", case), "--config", str(TINY), *[x for s in sets for x in ("--set", s)]])
        err = capsys.readouterr().err
        assert code == 2, err
        missing = [n for n in (_expand(e, case) for e in case["expect"]) if n not in err]
        assert not missing and "Traceback" not in err, f"{missing} not in: {err}"


def test_a_malformed_input_in_a_subprocess_prints_no_traceback(out, model_cache):
    case = next(c for c in CASES if c["id"] == "bad_json_line")
    before = _state(out)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *_run_argv(case, out, model_cache)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert f"{HERE / 'bad_json_line.jsonl'}: row 3: not valid JSON" in proc.stderr
    assert _state(out) == before

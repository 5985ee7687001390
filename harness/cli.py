"""`harness` command line. Domain errors become messages and exit codes here, and only here.

Exit codes: 0 PROMOTE / success, 1 BLOCK or a failed experiment, 2 bad input.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that spin while waiting halve CPU throughput when the cores are shared
    # (measured in bench/: a DPO step 7-10 s passive vs 15-29 s active on a loaded machine)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")  # we log to MLflow ourselves
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=1, default=str))


def cmd_run(args) -> int:
    from harness.config import load_config
    from harness.lifecycle import run_experiment

    config = load_config(args.config, args.set)
    # libraries print logs to stdout (the HF Trainer prints every log dict): keep stdout for our answer
    with contextlib.redirect_stdout(sys.stderr):
        result = run_experiment(config, config_path=args.config)
    if args.json:
        _print_json(result.to_json())
    else:
        _print_summary(result)
    return 0 if result.verdict == "PROMOTE" else 1


def cmd_sweep(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.sweep import load_sweep, run_sweep

    sweep, cells = load_sweep(args.config, args.set)
    console = Console(stderr=True)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_sweep(sweep, cells, runner=args.runner, address=args.address,
                           progress=lambda msg: console.print(f"[bold magenta]>>[/] {msg}"))
    if args.json:
        _print_json(result.to_json())
        return 0 if all(c.verdict != "FAILED" for c in result.cells) else 1
    table = Table(title=f"sweep {result.name} ({result.sweep_key})")
    for col in ("cell", "variant", "beta", "LC win %", "KL (k3)", "len ratio", "verdict", "selection",
                "first failed check"):
        table.add_column(col)
    fmt = lambda v: "—" if v is None else f"{v:.3g}"  # noqa: E731
    for c in result.cells:
        color = {"PROMOTE": "green", "BLOCK": "red"}.get(c.verdict, "yellow")
        table.add_row(c.cell + (" (reused)" if c.reused else ""), c.variant, f"{c.beta:g}",
                      fmt(c.metrics.get("winrate/lc_win_rate_pct")), fmt(c.metrics.get("kl/seq_kl_k3")),
                      fmt(c.metrics.get("length/ratio_tokens")), f"[{color}]{c.verdict}[/]", c.selection,
                      c.first_failure or "")
    Console().print(table)
    if result.selection:
        s = result.selection
        print(f"selection ({s['rule']}): {s['winner_cell'] or 'no cell'}; {s['promotion']}")
    print(f"summary: {result.summary_csv}")
    if result.report:
        print(f"report: {result.report}")
    return 0 if all(c.verdict != "FAILED" for c in result.cells) else 1


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"gate checks for {result.cell}")
    for col in ("check", "metric", "value", "bound", "result", "reason"):
        table.add_column(col)
    for c in result.decision.checks:
        value = "—" if c.value is None else f"{c.value:.4g}"
        bound = "—" if c.bound is None else f"{c.bound:.4g}"
        table.add_row(c.name, c.metric, value, bound, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.reason)
    console.print(table)
    color = "green" if result.verdict == "PROMOTE" else "red"
    console.print(f"verdict: [bold {color}]{result.verdict}[/]   run_id: {result.run_id}")
    if result.champion_version:
        console.print(f"registered as version {result.champion_version} and aliased champion")
    from harness.iterative import IterativeResult  # loaded already: the run just used it

    if isinstance(result, IterativeResult) and result.rounds:  # an iterative experiment: one line per round
        table = Table(title="rounds")
        for col in ("round", "reference", "pairs", "LC win % vs prev", "LC win % vs start", "KL k3 vs prev",
                    "KL k3 vs start", "verdict"):
            table.add_column(col)
        fmt = lambda v: "—" if v is None else f"{v:.3g}"  # noqa: E731
        for r in result.rounds:
            m = r.result.metrics
            ref = "start" if r.reference["round"] == 0 else f"round {r.reference['round']}"
            color = "green" if r.result.verdict == "PROMOTE" else "red"
            table.add_row(str(r.index), ref, str(r.data.get("pairs", "—")), fmt(m.get("winrate/lc_win_rate_pct")),
                          fmt(m.get("winrate_vs_start/lc_win_rate_pct")), fmt(m.get("kl/seq_kl_k3")),
                          fmt(m.get("kl_vs_start/seq_kl_k3")), f"[{color}]{r.result.verdict}[/]")
        console.print(table)
        console.print(f"champion: round {result.promoted_round}" if result.promoted_round else "no round promoted")
    console.print(f"report: {result.report}")


def cmd_lc_winrate(args) -> int:
    from evals.lc_winrate import lc_winrate, load_annotations, load_gamed_rows, load_instruction_difficulty
    from harness.errors import HarnessInputError

    frame = load_annotations(args.annotations)
    difficulty = load_instruction_difficulty(args.instruction_difficulty) if args.instruction_difficulty else None
    gamed = load_gamed_rows(args.gamed_rows) if args.gamed_rows else None
    if (difficulty is None) != (gamed is None):
        raise _input_error("--instruction-difficulty and --gamed-rows go together (the official recipe needs both)")
    try:
        result = lc_winrate(frame, instruction_difficulty=difficulty, gamed_rows=gamed, n_bootstrap=args.n_bootstrap)
    except HarnessInputError:
        raise
    except ValueError as exc:  # the annotations do not fit the recipe: two generators, rows without a difficulty
        raise HarnessInputError(f"{args.annotations}: cannot compute the win rates: {exc}") from None
    out = result.to_dict()
    if args.json:
        _print_json(out)
    else:
        print(f"win rate     {out['win_rate_pct']:.3f} ± {out['win_rate_stderr']:.3f} %  (n={out['n']})")
        print(f"LC win rate  {out['lc_win_rate_pct']:.3f} ± {out['lc_win_rate_stderr']:.3f} %  ({out['recipe']})")
    return 0


def _tracker_for(args, run_id: str):
    from harness.tracking import tracker_for_run

    return tracker_for_run(args.output_dir, run_id)


def cmd_gate(args) -> int:
    import dataclasses

    from harness.config import load_config
    from harness.promotion import (
        champion_baseline,
        gate_config_key,
        load_recorded,
        record_decision,
        record_regate,
        regate,
        require_intact,
    )

    tracker = _tracker_for(args, args.run_id)
    # a run that did not finish, a missing/partial checkpoint, or evidence edited since the run ended: exit 2
    require_intact(tracker, args.run_id, "gate")
    own = load_recorded(tracker, args.run_id)
    recorded = dataclasses.replace(own, config=load_config(args.config)) if args.config else own
    registry = recorded.config.registry
    champion = tracker.champion(registry.model_name, registry.alias)
    decision = regate(recorded, champion_baseline(tracker, champion), against=args.against)
    key = gate_config_key(recorded.config, args.against)
    if key == gate_config_key(own.config):  # the run's own rules: this is its verdict now
        record_decision(tracker, decision, name="gate_decision_regated.json")
        recorded_as = "harness.verdict"
    else:  # other rules answer another question: their verdict never replaces the run's own
        source = args.config or f"--against {args.against}"
        if args.config and args.against:
            source += f" --against {args.against}"
        record_regate(tracker, decision, key=key, source=source)
        recorded_as = f"harness.regate.{key}.verdict"
    if args.json:
        _print_json({"run_id": args.run_id, "cell": recorded.cell, "recorded_as": recorded_as, **decision.to_dict()})
    else:
        for c in decision.checks:
            print(f"{'pass' if c.passed else 'FAIL'}  {c.name:32s} {c.reason}")
        print(f"verdict: {decision.verdict}  (recorded as {recorded_as})")
    return 0 if decision.verdict == "PROMOTE" else 1


def cmd_promote(args) -> int:
    import getpass

    from harness.errors import HarnessInputError
    from harness.promotion import (
        EvidenceError,
        force_promote,
        load_recorded,
        promote_run,
        regate,
        require_intact,
        sweep_selection_problem,
    )

    tracker = _tracker_for(args, args.run_id)
    if args.force:
        if not (args.reason or "").strip():
            raise _input_error("--force needs --reason: a forced promotion is recorded with why")
        try:
            recorded = load_recorded(tracker, args.run_id)
        except HarnessInputError:
            raise
        except Exception as exc:  # no config.json: the run died before writing it, nothing to ship
            raise EvidenceError(f"run {args.run_id}: refusing to force-promote: its config.json cannot be read "
                                f"({type(exc).__name__}: {exc})") from None
        registry = recorded.config.registry
        version = force_promote(tracker, registry, cell=recorded.cell, reason=args.reason, user=getpass.getuser())
        print(f"FORCED: {registry.model_name} version {version} is now '{registry.alias}' (reason recorded)")
        return 0
    require_intact(tracker, args.run_id, "promote")
    recorded = load_recorded(tracker, args.run_id)
    registry = recorded.config.registry
    if recorded.verdict != "PROMOTE":
        print(f"refused: run {args.run_id} was not validated (verdict {recorded.verdict}); "
              "re-gate it with `harness gate`, or use --force --reason", file=sys.stderr)
        return 1
    unselected = sweep_selection_problem(tracker, args.run_id)
    if unselected:
        print(f"refused: run {args.run_id} passed its gate but {unselected}. Use --force --reason to override",
              file=sys.stderr)
        return 1
    champion = tracker.champion(registry.model_name, registry.alias)
    if champion and champion[1] == args.run_id:
        print(f"run {args.run_id} is already '{registry.alias}' (version {champion[0]})")
        return 0
    outcome = promote_run(tracker, registry, lambda champ: regate(recorded, champ), cell=recorded.cell)
    if outcome.version:
        print(f"promoted: {registry.model_name} version {outcome.version} is now '{registry.alias}'")
        return 0
    print(f"refused: the gate now says {outcome.decision.verdict}: {outcome.decision.first_failure}", file=sys.stderr)
    return 1


def cmd_report(args) -> int:
    from pathlib import Path

    from reports.from_mlflow import render_from_mlflow

    tracker = _tracker_for(args, args.run_id)
    with contextlib.redirect_stdout(sys.stderr):  # stdout: the path only
        path = render_from_mlflow(tracker, args.run_id, Path(args.out) if args.out else None)
    print(path.resolve())
    return 0


def _input_error(message: str):
    from harness.errors import HarnessInputError

    return HarnessInputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Evaluation-gated preference optimization.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate, gate and report one experiment cell",
                         description="Run one experiment. Exit 0 on PROMOTE, 1 on BLOCK or failure, 2 on bad input.")
    run.add_argument("config", help="experiment YAML")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value by dotted path, e.g. --set beta=0.2 --set data.source=hf:NAME")
    run.add_argument("--json", action="store_true", help="print one JSON object with run_id, cell, verdict, metrics, checks, report")
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser("sweep", help="run a grid of cells sharing their common work; resumes after a crash",
                           description="Exit 0 when every cell finished (PROMOTE or BLOCK), 1 when a cell failed, 2 on "
                                       "bad input or when another process runs the same sweep. Cells only gate; once "
                                       "all finished, the best passing cell by `select:` is promoted, alone.")
    sweep.add_argument("config", help="sweep YAML")
    sweep.add_argument("--runner", choices=["local", "ray"], help="local (sequential, default) or ray (one task per cell)")
    sweep.add_argument("--address", help="Ray cluster address (default: start a local one)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting; experiment keys apply to the shared base (e.g. output_dir=/tmp/x)")
    sweep.add_argument("--json", action="store_true", help="print one JSON object with a `cells` list")
    sweep.set_defaults(func=cmd_sweep)

    gate_cmd = sub.add_parser("gate", help="re-decide a recorded run with the current rules and champion "
                                                "(harness gate plan CONFIG: the rules' error rates before training)",
                              description="Exit 0 ship, 1 no-ship, 2 bad input or a run whose evidence cannot back a "
                                          "decision (not FINISHED, checkpoint missing or partial, config.json, "
                                          "eval_errors.json or metrics changed since the run ended). With the run's "
                                          "own rules the decision becomes its verdict; with --config/--against it is "
                                          "recorded under harness.regate.<key>.* and the run's verdict stays.")
    gate_cmd.add_argument("run_id")
    gate_cmd.add_argument("--against", choices=["reference", "champion", "start"], help="compare every regression rule with this baseline")
    gate_cmd.add_argument("--config", help="take the gate rules from this YAML instead of the run's recorded config")
    gate_cmd.add_argument("--output-dir", default="runs", help="the run directory holding mlflow.db (default runs)")
    gate_cmd.add_argument("--json", action="store_true")
    gate_cmd.set_defaults(func=cmd_gate)

    promote = sub.add_parser("promote", help="move the champion alias to a validated run",
                             description="Refuses (exit 1) a run the gate did not pass, or a sweep cell its sweep did not "
                                         "select, unless --force --reason (both recorded); refuses (exit 2) a run whose "
                                         "evidence is not intact, and even --force a missing or partial checkpoint.")
    promote.add_argument("run_id")
    promote.add_argument("--force", action="store_true")
    promote.add_argument("--reason", help="why a forced promotion is acceptable (required with --force)")
    promote.add_argument("--output-dir", default="runs")
    promote.set_defaults(func=cmd_promote)

    lc = sub.add_parser("lc-winrate", help="raw and length-controlled win rate of an alpaca-eval annotation file")
    lc.add_argument("annotations", help="JSONL or JSONL.gz with instruction, output_1, output_2, preference, generator_1, generator_2")
    lc.add_argument("--instruction-difficulty", help="CSV index,instruction_difficulty (official AlpacaEval recipe)")
    lc.add_argument("--gamed-rows", help="CSV(.gz) standing in for alpaca-eval's df_gamed.csv (official recipe)")
    lc.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    lc.add_argument("--json", action="store_true")
    lc.set_defaults(func=cmd_lc_winrate)

    from harness.compare_command import add_compare_command
    from harness.data_commands import add_data_commands
    from harness.judge_commands import add_judge_commands
    from harness.plan_command import add_plan_command

    add_data_commands(sub)
    add_judge_commands(sub)
    add_plan_command(sub)
    add_compare_command(sub)

    report = sub.add_parser("report", help="regenerate the HTML report of a run or a sweep from MLflow",
                            description="Renders the cell page of a run, or the sweep page (and its cells' pages) "
                                        "of a sweep's parent run, logs it to the run as an artifact, prints the path.")
    report.add_argument("run_id", metavar="SWEEP_OR_RUN", help="a cell's run id, or a sweep's parent run id")
    report.add_argument("--output-dir", default="runs", help="the run directory holding mlflow.db (default runs)")
    report.add_argument("--out", help="where to write the HTML (default: under OUTPUT_DIR/cells or OUTPUT_DIR/sweeps)")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    from harness.errors import HarnessInputError
    from harness.plan_command import rewrite_gate_plan

    parser = build_parser()
    args = parser.parse_args(rewrite_gate_plan(list(sys.argv[1:] if argv is None else argv)))
    try:
        return args.func(args)
    except HarnessInputError as exc:  # also ModelLoadError and AnnotationError: input errors by type
        from harness.redaction import scrub_text

        print(f"error: {scrub_text(str(exc))}", file=sys.stderr)  # a config error may echo a URL with its password
        return 2
    except Exception:  # a crash: recorded as failed where it happened; its traceback may hold a URL or a key
        import traceback

        from harness.redaction import scrub_text

        print(scrub_text(traceback.format_exc()), file=sys.stderr, end="")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`harness` command line. Domain errors become messages and exit codes here, and only here.

Exit codes: 0 PROMOTE / success, 1 BLOCK or a failed experiment, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")  # we log to MLflow ourselves
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=1, default=str))


def cmd_run(args) -> int:
    from harness.config import load_config
    from harness.experiment import run_experiment

    config = load_config(args.config, args.set)
    result = run_experiment(config, config_path=args.config)
    if args.json:
        _print_json(result.to_json())
    else:
        _print_summary(result)
    return 0 if result.verdict == "PROMOTE" else 1


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
    console.print(f"report: {result.report}")


def cmd_lc_winrate(args) -> int:
    from evals.lc_winrate import load_annotations, load_gamed_rows, load_instruction_difficulty, lc_winrate

    frame = load_annotations(args.annotations)
    difficulty = load_instruction_difficulty(args.instruction_difficulty) if args.instruction_difficulty else None
    gamed = load_gamed_rows(args.gamed_rows) if args.gamed_rows else None
    if (difficulty is None) != (gamed is None):
        raise _input_error("--instruction-difficulty and --gamed-rows go together (the official recipe needs both)")
    result = lc_winrate(frame, instruction_difficulty=difficulty, gamed_rows=gamed, n_bootstrap=args.n_bootstrap)
    out = result.to_dict()
    if args.json:
        _print_json(out)
    else:
        print(f"win rate     {out['win_rate_pct']:.3f} ± {out['win_rate_stderr']:.3f} %  (n={out['n']})")
        print(f"LC win rate  {out['lc_win_rate_pct']:.3f} ± {out['lc_win_rate_stderr']:.3f} %  ({out['recipe']})")
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

    lc = sub.add_parser("lc-winrate", help="raw and length-controlled win rate of an alpaca-eval annotation file")
    lc.add_argument("annotations", help="JSONL or JSONL.gz with instruction, output_1, output_2, preference, generator_1, generator_2")
    lc.add_argument("--instruction-difficulty", help="CSV index,instruction_difficulty (official AlpacaEval recipe)")
    lc.add_argument("--gamed-rows", help="CSV(.gz) standing in for alpaca-eval's df_gamed.csv (official recipe)")
    lc.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    lc.add_argument("--json", action="store_true")
    lc.set_defaults(func=cmd_lc_winrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    from harness.errors import HarnessInputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Input errors raised by libraries we call with user data (model loading, annotation files)
        from evals.lc_winrate import AnnotationError
        from harness.models import ModelLoadError

        if isinstance(exc, (AnnotationError, ModelLoadError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

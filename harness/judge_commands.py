"""`harness judge calibrate`: measure a judge against human labels and store the result in MLflow.

cli.py wires this in (`add_judge_commands`). Exit codes: 0 calibrated, 1 the judge could not give
verdicts (server down, unparseable answers), 2 bad input (judge config, label file: the message
names the file, row and field).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def add_judge_commands(subparsers) -> None:
    judge = subparsers.add_parser("judge", help="judge discipline: calibrate a judge against human labels")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True)
    cal = judge_sub.add_parser(
        "calibrate", help="agreement with human labels, position and length bias, ties and cost of a judge",
        description="Judge human-labelled pairs (chosen = the human pick) in both orders and report agreement "
                    "(Wilson 95 percent interval), position bias, length bias against the humans', tie rate and cost, "
                    "and two canaries judged against the human picks: a constant content-free answer and the "
                    "pick padded to twice its length (judge/canary_flag is 1 when the judge prefers the first in "
                    "more than 10 percent or the second in more than 60 percent of verdicts). "
                    "The result is stored in MLflow under the judge's fingerprint; every cell judged by the same "
                    "judge then carries judge/* metrics a gate rule can require. Exit 0 calibrated, 1 the judge "
                    "failed, 2 bad input.")
    cal.add_argument("--judge", required=True,
                     help="a YAML file holding an eval.judge mapping (e.g. {name: llm, base_url: ..., model: ...}) "
                          "or an experiment config (its eval.judge is used), or a judge name such as rule")
    cal.add_argument("--labels", required=True,
                     help="human-labelled pairs: a .jsonl/.jsonl.gz/.json/.parquet file, a folder, or hf:NAME")
    cal.add_argument("--limit", type=int, help="calibrate on the first N usable pairs")
    cal.add_argument("--split", default="train", help="dataset split for hf:NAME (default train)")
    cal.add_argument("--output-dir", default="runs", help="the run directory holding mlflow.db (default runs)")
    cal.add_argument("--tracking-uri", help="a remote MLflow server instead of OUTPUT_DIR/mlflow.db")
    cal.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples for the slope intervals")
    cal.add_argument("--no-canaries", action="store_true",
                     help="skip the canaries (a constant content-free answer, and the reference padded to twice its "
                          "length, each judged against the reference; 4 more verdicts per pair)")
    cal.add_argument("--no-record", action="store_true", help="measure only; store nothing in MLflow")
    cal.add_argument("--json", action="store_true", help="print one JSON object")
    cal.set_defaults(func=cmd_judge_calibrate)


def cmd_judge_calibrate(args) -> int:
    from evals.judge_calibration import (
        calibrate,
        judge_spec_from_text,
        load_labelled_pairs,
        make_judge,
        record_calibration,
    )
    from evals.judges import JudgeError

    spec = judge_spec_from_text(args.judge)
    labelled = load_labelled_pairs(args.labels, limit=args.limit, split=args.split)
    judge = make_judge(spec)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # alpaca-eval and transformers print progress
            calibration = calibrate(judge, labelled, n_bootstrap=args.n_bootstrap, canaries=not args.no_canaries)
    except JudgeError as exc:
        print(f"error: the judge could not give verdicts: {exc}", file=sys.stderr)
        return 1
    if not args.no_record:
        calibration.run_id = record_calibration(calibration, Path(args.output_dir), tracking_uri=args.tracking_uri,
                                                spec=spec, limit=args.limit)
    if args.json:
        out = {k: v for k, v in calibration.to_dict().items() if k != "per_pair"}  # per pair: the MLflow artifact
        print(json.dumps(out, indent=1, default=str))
    else:
        _print_calibration(calibration)
    return 0


def _print_calibration(calibration) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from evals.judge_calibration import calibration_summary

    n = int(calibration.metrics["judge/n_pairs"])
    table = Table(title=f"judge calibration: {escape(calibration.judge)} on {n} human-labelled pairs "
                        f"({escape(calibration.labels)})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for label, text in calibration_summary(calibration.metrics):
        table.add_row(label, escape(text))
    if calibration.dropped:
        table.add_row("skipped rows", escape(", ".join(f"{k}: {v}" for k, v in calibration.dropped.items())))
    table.add_row("judge fingerprint", escape(calibration.fingerprint))
    console = Console()
    console.print(table)
    if calibration.metrics.get("judge/canary_flag"):
        console.print("[bold yellow]canary flag:[/] this judge prefers a content-free or padded answer beyond the set "
                      "rate; win rates it gives can be gamed (gate on it: {metric: judge/canary_flag, max: 0, "
                      "statistic: point})", markup=True)
    if calibration.run_id:
        console.print(f"stored: MLflow run {calibration.run_id} (experiment judge-calibration, judge key "
                      f"{calibration.key}); cells judged by this judge now carry judge/* metrics")
    else:
        console.print("not stored (--no-record)")

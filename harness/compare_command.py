"""`harness compare RUN_A RUN_B`: RUN_A's answers judged against RUN_B's on the same held-out prompts
(harness.compare). Exit 0 when compared, 2 on bad input: an unknown run, or one that did not FINISH or
whose evidence no longer matches."""
from __future__ import annotations

import contextlib
import json
import sys

from rich.console import Console
from rich.table import Table


def add_compare_command(sub) -> None:
    compare = sub.add_parser(
        "compare", help="judge two recorded checkpoints against each other on the same held-out prompts",
        description="Rebuilds both runs' checkpoints on their base models (answers served from the generation "
                    "cache when the runs left them), judges every prompt in both orders with RUN_A's judge, and "
                    "prints RUN_A's raw, length-controlled and style-controlled win rates over RUN_B with 95% "
                    "intervals (50 = no difference). Prompts, decoding and judge follow RUN_A's config. When RUN_B "
                    "was RUN_A's champion, these are RUN_A's recorded winrate_vs_champion/* (checked and reported). "
                    "Exit 0 when compared, 2 on bad input (unknown run, not FINISHED, evidence changed since it ended).")
    compare.add_argument("run_a", metavar="RUN_A", help="the run whose win rate is reported")
    compare.add_argument("run_b", metavar="RUN_B", help="the run it is judged against (e.g. the champion's)")
    compare.add_argument("--n-prompts", type=int, help="held-out prompts to judge (default: RUN_A's eval.n_prompts)")
    compare.add_argument("--output-dir", default="runs", help="the run directory holding mlflow.db (default runs)")
    compare.add_argument("--json", action="store_true", help="print one JSON object (metrics, answers, samples)")
    compare.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from evals.vs_champion import COMPARED
    from harness.compare import compare_runs
    from harness.tracking import tracker_for_run

    tracker = tracker_for_run(args.output_dir, args.run_a)
    with contextlib.redirect_stdout(sys.stderr):  # stdout: the result only (progress goes to stderr)
        result = compare_runs(tracker, args.run_a, args.run_b, n_prompts=args.n_prompts)
    if args.json:
        print(json.dumps(result.to_json(), indent=1, default=str))
        return 0
    console = Console()
    table = Table(title=f"{result.run_a} (A) vs {result.run_b} (B): A's win rate over B, {result.n_prompts} prompts, "
                        f"judge {result.judge}")
    for col in ("metric", "A over B %", "95% interval", "stderr"):
        table.add_column(col)
    m = result.metrics
    for key in COMPARED:  # raw, LC, style-controlled: the win rates a rule `against: champion` reads head to head
        if key in m:
            table.add_row(key, f"{m[key]:.1f}", f"[{m[f'{key}_ci_low']:.1f}, {m[f'{key}_ci_high']:.1f}]",
                          f"{m[f'{key}_stderr']:.2f}")
        else:
            table.add_row(key, "—", "not identified", str(m.get(f"{key}_missing_reason", ""))[:80])
    console.print(table)
    flips = m.get("winrate/position_flip_rate")
    console.print(f"answers: A from {result.answers['a']['source']}, B from {result.answers['b']['source']}"
                  + (f"; verdicts that flipped with the order: {100 * flips:.0f}%" if flips is not None else ""))
    if result.reproduces is not None:  # A was judged against B as its champion when it ran (evals.vs_champion)
        console.print(f"RUN_A's recorded head-to-head against RUN_B (winrate_vs_champion/*, {len(result.recorded)} "
                      f"values): {'reproduced exactly' if result.reproduces else 'NOT reproduced'}")
    return 0

"""One side of the sweep-vs-naive benchmark in a fresh process; prints {"seconds", "verdicts"} as JSON last.

    python -m bench.sweep_child {sweep|naive} --work-dir DIR [--set KEY=VALUE]...

- sweep: harness.sweep.load_sweep + run_sweep, one output dir and ONE shared cache dir (fresh).
- naive: the same cells, each run by harness.lifecycle.run_experiment with its own fresh output dir AND
  its own fresh cache dir: it rebuilds the tokenizer/model cache, the data, the reference generations,
  the reference log-probs, the reference domain evals and the judge calls, as a loop over
  `harness run` would. In one process (like the sweep), so neither side pays for interpreter starts.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SWEEP_FILE = Path(__file__).resolve().parents[1] / "experiments" / "tiny_sweep.yaml"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["sweep", "naive"])
    ap.add_argument("--work-dir", required=True, type=Path)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()

    from harness.lifecycle import run_experiment
    from harness.sweep import load_sweep, run_sweep

    w = a.work_dir.resolve()
    started = time.perf_counter()
    if a.side == "sweep":
        sweep, cells = load_sweep(SWEEP_FILE, a.set + [f"output_dir={w / 'out'}", f"cache_dir={w / 'cache'}"])
        result = run_sweep(sweep, cells, runner="local", progress=lambda m: None)
        verdicts = [c.verdict for c in result.cells]
    else:
        _, cells = load_sweep(SWEEP_FILE, a.set)
        verdicts = []
        for i, cell in enumerate(cells):
            own = w / f"cell{i}"
            config = cell.model_copy(update={"output_dir": own / "out", "cache_dir": own / "cache"})
            try:
                verdicts.append(run_experiment(config).verdict)
            except Exception as exc:  # counted, like the sweep's FAILED
                verdicts.append(f"FAILED ({type(exc).__name__})")
    print(json.dumps({"side": a.side, "seconds": time.perf_counter() - started, "verdicts": verdicts}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep vs naive: experiments/tiny_sweep.yaml (4 cells on embedded:tiny) through the sweep, and as a naive loop.

Each side runs in a fresh process (bench.sweep_child) with the same reduced settings (OVERRIDES, or
QUICK_OVERRIDES for --quick); the time is measured inside the child, from the first harness call to
the last cell's end (both sides import the same modules before the clock starts).
"""
from __future__ import annotations

import json
import subprocess
import sys

from bench.common import REPO_ROOT, Line, Settings, fresh_dir, goal, progress, ratio

GOAL = 1.8
# Applied to both sides. The data is the harness's default mode, on-policy (k samples per prompt from
# the starting model, best vs worst), as in experiments/quickstart.yaml: tiny_sweep.yaml itself uses
# template-written pairs so that its tests train on a learnable preference, but a sweep's users sample
# on-policy, and that sampling is exactly the work a sweep does once and a naive loop once per cell.
ON_POLICY = ["data.responder=policy"]
OVERRIDES: list[str] = ON_POLICY
QUICK_OVERRIDES = ON_POLICY + ["training.max_steps=2", "eval.n_prompts=6", "eval.kl.n_prompts=3",
                               "eval.domain_limit=6", "eval.diversity.n_prompts=2"]


def _side(side: str, settings: Settings, overrides: list[str], log) -> dict:
    work = fresh_dir(settings.work_dir / "sweep_vs_naive" / side)
    cmd = [sys.executable, "-m", "bench.sweep_child", side, "--work-dir", str(work)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.sweep_child {side} exited {proc.returncode} (see the log)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(settings: Settings, log=None) -> list[Line]:
    overrides = QUICK_OVERRIDES if settings.quick else OVERRIDES
    progress("sweep_vs_naive: sweep (one shared cache)")
    sweep = _side("sweep", settings, overrides, log)
    progress("sweep_vs_naive: naive loop (a fresh cache per cell)")
    naive = _side("naive", settings, overrides, log)
    r = naive["seconds"] / sweep["seconds"]
    ok_cells = all(v in ("PROMOTE", "BLOCK") for v in sweep["verdicts"] + naive["verdicts"])
    settings_note = f"--set {' '.join(overrides)}" if overrides else "tiny_sweep.yaml's own sizes"
    failed = "" if ok_cells else f"; CELLS FAILED: sweep {sweep['verdicts']}, naive {naive['verdicts']}"
    return [Line("sweep_vs_naive", ratio(r),
                 f"naive loop {naive['seconds']:.0f} s vs sweep {sweep['seconds']:.0f} s for "
                 f"{len(sweep['verdicts'])} cells on embedded:tiny ({settings_note}), each side once in a fresh "
                 f"process, in-process cells on both sides{failed}; {goal(r >= GOAL, f'>= {GOAL:g}x')}", missed=r < GOAL)]

"""python -m bench [--quick] [--only NAME[,NAME]]... : one line per figure, `name: ratio (detail)`.

Everything the libraries print (progress bars, warnings, the harness's stages, child processes)
goes to the log (default runs/bench/bench.log); stdout carries the figure lines only, stderr a
`# ...` progress line per stage. Exit 0 when every figure was measured (met or MISSED), 1 when one
could not be measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

GROUPS = {
    "train_step": ("train_step_overhead", "train_step_harness_default", "ref_step_time_vs_copy"),
    "ref_memory": ("ref_memory_vs_copy", "ref_memory_vs_sft"),
    "generation": ("generation_batched_cpu", "generation_gpu"),
    "mfu": ("mfu_cpu",),
    "sweep": ("sweep_vs_naive",),
}
BUDGET_S = 15 * 60
TERMINAL_OUT = None  # the original stdout/stderr, kept while fds 1 and 2 point at the log
TERMINAL_ERR = None


def _selected(only: list[str]) -> list[str]:
    if not only:
        return list(GROUPS)
    wanted = set()
    for item in (x.strip() for arg in only for x in arg.split(",") if x.strip()):
        group = item if item in GROUPS else next((g for g, names in GROUPS.items() if item in names), None)
        if group is None:
            names = sorted(set(GROUPS) | {n for v in GROUPS.values() for n in v})
            raise SystemExit(f"--only {item!r}: unknown; one of {', '.join(names)}")
        wanted.add(group)
    return [g for g in GROUPS if g in wanted]


def main(argv: list[str] | None = None) -> int:
    global TERMINAL_OUT, TERMINAL_ERR
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one round: a smoke check, not a measurement")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"a group ({', '.join(GROUPS)}) or a figure name; repeat or comma-separate")
    ap.add_argument("--work-dir", type=Path, default=Path("runs/bench"), help="scratch outputs (wiped per figure)")
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/bench-cache"),
                    help="the embedded model's GGUF->safetensors conversion, kept between runs")
    ap.add_argument("--log", type=Path, default=None, help="library output (default WORK_DIR/bench.log)")
    ap.add_argument("--omp-active", action="store_true",
                    help="keep OpenMP's default (spinning) wait policy instead of OMP_WAIT_POLICY=PASSIVE (README)")
    a = ap.parse_args(argv)
    groups = _selected(a.only)

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")  # everything is local; never wait on a hub that cannot be reached
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not a.omp_active:
        # before torch (and its OpenMP runtime) loads: idle threads sleep instead of spinning, so that on a
        # shared machine the neighbours' load does not multiply our step times (bench/README.md)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    a.work_dir.mkdir(parents=True, exist_ok=True)
    log_path = a.log or a.work_dir / "bench.log"
    log = open(log_path, "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    TERMINAL_OUT = os.fdopen(os.dup(1), "w", buffering=1)
    TERMINAL_ERR = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)

    import bench.common
    from bench.common import Line, Settings, cpu_count, progress

    bench.common.TERMINAL_ERR = TERMINAL_ERR

    settings = Settings(quick=a.quick, work_dir=a.work_dir.resolve(), cache_dir=a.cache_dir.resolve())
    progress(f"bench: {', '.join(groups)}{' (quick)' if a.quick else ''}; {cpu_count()} cores; "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; library output in {log_path}")
    started = time.perf_counter()
    failed = False
    for group in groups:
        t0 = time.perf_counter()
        try:
            lines = _run_group(group, settings, groups, log)
        except Exception as exc:  # one figure that cannot be measured does not stop the others
            failed = True
            traceback.print_exc()  # into the log
            lines = [Line(n, "error", f"{type(exc).__name__}: {exc}; see {log_path}") for n in GROUPS[group]]
        for line in lines:
            print(line, file=TERMINAL_OUT, flush=True)
        progress(f"{group}: {time.perf_counter() - t0:.0f} s")
    total = time.perf_counter() - started
    everything = groups == list(GROUPS) and not a.quick
    note = (f"goal < {BUDGET_S // 60} min: {'met' if total < BUDGET_S else 'MISSED'}" if everything
            else "partial run (--quick or --only): no goal")
    print(f"bench_runtime: {total / BUDGET_S:.2f}x of the {BUDGET_S // 60}-minute budget ({total:.0f} s, "
          f"{cpu_count()} cores, load average {_loadavg()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"{note})", file=TERMINAL_OUT, flush=True)
    os.dup2(TERMINAL_OUT.fileno(), 1)
    os.dup2(TERMINAL_ERR.fileno(), 2)
    return 1 if failed else 0


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _run_group(group: str, settings, groups: list[str], log):
    if group == "train_step":
        from bench import train_step

        return train_step.measure(settings, want_mfu="mfu" in groups)
    if group == "ref_memory":
        from bench import ref_memory

        return ref_memory.measure(settings, log)
    if group == "generation":
        from bench import generation

        return generation.measure(settings)
    if group == "mfu":
        from bench import mfu

        return mfu.measure(settings)
    if group == "sweep":
        from bench import sweep_vs_naive

        return sweep_vs_naive.measure(settings, log)
    raise ValueError(group)


if __name__ == "__main__":
    sys.exit(main())

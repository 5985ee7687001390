"""Reference without a copy: peak memory of a harness LoRA DPO cell vs the seed's second-model scaffold vs plain SFT.

Each configuration runs in its own process (bench.memory_child) and reports ru_maxrss, the peak
resident set size (CPU: RSS is the memory that counts). The processes run one after another;
peak memory does not depend on the machine's load the way time does.
"""
from __future__ import annotations

import json
import subprocess
import sys

from bench.common import REPO_ROOT, Line, Settings, fresh_dir, goal, progress, ratio

SFT_GOAL = 1.15
CONFIGS = ("harness", "ref_copy", "sft", "sft_pairs")


def _child(config: str, settings: Settings, log) -> dict:
    work = fresh_dir(settings.work_dir / "ref_memory" / config)
    cmd = [sys.executable, "-m", "bench.memory_child", config, "--cache-dir", str(settings.cache_dir),
           "--work-dir", str(work), "--steps", str(settings.memory_steps)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory_child {config} exited {proc.returncode} (see the log)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(settings: Settings, log=None) -> list[Line]:
    from bench.common import load_smollm

    load_smollm(settings.cache_dir)  # the GGUF conversion, once, outside the children
    results = {}
    for config in CONFIGS:
        progress(f"ref_memory: {config} (own process)")
        results[config] = _child(config, settings, log)
    a, b, c, d = (results[k]["peak_rss_mib"] for k in CONFIGS)
    base = results["harness"]["rss_after_imports_mib"]
    r_copy, r_sft = a / b, a / c
    above = lambda x: x - base  # noqa: E731
    return [
        Line("ref_memory_vs_copy", ratio(r_copy),
             f"peak RSS {a:.0f} MiB (LoRA DPO, reference = adapters disabled + precomputed log-probs) vs {b:.0f} MiB "
             f"(second full reference model); above the {base:.0f} MiB of the imports alone: {above(a):.0f} vs "
             f"{above(b):.0f} MiB; {settings.memory_steps} step(s) of batch 4, one process each, VmHWM; {goal(r_copy < 1.0, '< 1x')}",
             missed=r_copy >= 1.0),
        Line("ref_memory_vs_sft", ratio(r_sft),
             f"peak RSS {a:.0f} MiB (LoRA DPO, harness) vs {c:.0f} MiB (plain LoRA SFT step on the chosen completions, "
             f"same model, batch 4); above the imports: {above(a):.0f} vs {above(c):.0f} MiB; vs SFT on the same 8 "
             f"sequences (chosen and rejected as rows, batch 8) {d:.0f} MiB: {ratio(a / d)}; "
             f"{goal(r_sft <= SFT_GOAL, f'<= {SFT_GOAL}x')}", missed=r_sft > SFT_GOAL),
    ]

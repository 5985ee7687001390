"""Shared pieces of the benchmarks: the output line, the bench configuration, the model and the rows."""
from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMOLLM = "embedded:smollm2-135m-instruct"
REPO_ROOT = Path(__file__).resolve().parents[1]  # child processes run here, so `-m bench.*` imports from any cwd

# smollm_dpo.yaml's training settings (batch 4, LoRA r16/alpha32 on all linear layers), max_length 128
# (~640 tokens a step, chosen + rejected), written here so that edits of the example configs cannot move it.
TRAINING = {"batch_size": 4, "learning_rate": 2.0e-4, "max_length": 128, "lora": {"r": 16, "alpha": 32}}


@dataclass
class Line:
    """One figure: `name: ratio (detail)`."""

    name: str
    ratio: str
    detail: str
    missed: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.ratio} ({self.detail})"


@dataclass
class Settings:
    quick: bool
    work_dir: Path  # scratch outputs, wiped per figure
    cache_dir: Path  # the GGUF -> safetensors conversion, kept between runs
    shared: dict[str, Any] = field(default_factory=dict)  # results one figure hands to another (MFU reuses training)

    @property
    def reps(self) -> int:
        return 1 if self.quick else 3

    @property
    def train_steps(self) -> int:
        """Steps per timed training run: 1 keeps three interleaved rounds of four configurations inside the
        15-minute budget; the harness's fixed per-cell cost is then counted against one step (conservative)."""
        return 1

    @property
    def memory_steps(self) -> int:
        """Steps in the peak-memory processes: 2 (the second step runs with the optimizer state allocated)."""
        return 1 if self.quick else 2


def median(values) -> float:
    return float(statistics.median(values))


def goal(ok: bool, text: str) -> str:
    return f"goal {text}: {'met' if ok else 'MISSED'}"


def ratio(x: float) -> str:
    return f"{x:.3f}x" if x < 10 else f"{x:.1f}x"


TERMINAL_ERR = None  # set by bench.__main__: the terminal's stderr while fds 1 and 2 point at the log


def progress(msg: str) -> None:
    """Progress goes to the terminal's stderr, never to the figure lines or the log."""
    print(f"# {msg}", file=TERMINAL_ERR or sys.stderr, flush=True)


def smollm_config(out_dir: Path, cache_dir: Path, *, max_steps: int, precompute: bool = True, variant: str = "dpo",
                  beta: float = 0.1):
    from harness.config import validate_config

    training = dict(TRAINING, max_steps=max_steps, precompute_ref_log_probs=precompute)
    return validate_config({
        "name": "bench", "output_dir": str(out_dir), "cache_dir": str(cache_dir), "seed": 0,
        "model": {"name": SMOLLM}, "variant": variant, "beta": beta,
        # template answers: pairs in a second, no sampling; the token counts are what a step costs
        "data": {"source": "builtin:verifiable", "responder": "template", "n_prompts": 48},
        "training": training,
    }, source="bench")


def load_smollm(cache_dir: Path):
    from harness.models import load_model

    return load_model(SMOLLM, cache_dir)


def bench_rows(config, loaded, n: int) -> list[dict]:
    """n training pairs (TRL conversational rows): one epoch of max_steps x batch_size, so every row is trained once."""
    from harness.data.loading import load_preference_data

    data = load_preference_data(config, loaded.model, loaded.tokenizer, loaded.fingerprint)
    if len(data.train) < n:
        raise RuntimeError(f"bench needs {n} pairs, the builtin data gave {len(data.train)}")
    return data.train[:n]


def fresh_dir(path: Path) -> Path:
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def rss_mib() -> float:
    """Peak resident set size of this program so far, MiB.

    VmHWM (/proc/self/status) where there is one: getrusage's ru_maxrss is the same high-water mark but
    Linux carries the parent's peak into it across fork+exec, so a child started by a big parent would
    report the parent's size. ru_maxrss (KiB on Linux) elsewhere.
    """
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

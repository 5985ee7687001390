"""One entry for every run: a single cell (harness.experiment) or an iterative chain of rounds
(harness.iterative). Both outcomes answer the same protocol, so the CLI, sweeps and tests never
ask which one they got."""
from __future__ import annotations

from typing import Any, Callable, Protocol

from harness.config import ExperimentConfig
from harness.experiment import ExperimentResult, run_cell
from harness.iterative import IterativeResult, run_iterative


class RunOutcome(Protocol):
    run_id: str
    verdict: str  # PROMOTE or BLOCK
    report: str  # path of the HTML report ("" when it could not render)

    def to_json(self) -> dict[str, Any]: ...


def run_experiment(config: ExperimentConfig, *, config_path: str = "", hooks: dict[str, Callable] | None = None,
                   extra_tags: dict[str, str] | None = None, promote: bool = True) -> ExperimentResult | IterativeResult:
    """`hooks` lets tests inject faults through the public path (see harness.experiment.run_cell).
    `promote=False`: gate and record, never move the alias (a sweep's cells: the sweep promotes its one
    selected cell)."""
    if config.iterations > 1:
        return run_iterative(config, config_path=config_path, hooks=hooks, extra_tags=extra_tags)
    return run_cell(config, config_path=config_path, hooks=hooks, extra_tags=extra_tags, promote=promote)

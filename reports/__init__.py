"""Self-contained HTML reports (one page per experiment)."""

from reports.experiment import render_experiment_report

__all__ = ["render_experiment_report"]

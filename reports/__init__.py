"""Self-contained HTML reports: one page per experiment cell, one per sweep."""

from reports.experiment import render_experiment_report
from reports.sweep import render_sweep_report

__all__ = ["render_experiment_report", "render_sweep_report"]

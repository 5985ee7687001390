"""Self-contained HTML reports: one page per experiment cell, one per sweep, one per iterative chain;
each renders one document (reports.documents), built from a live result or from MLflow."""

from reports.experiment import render_experiment_report
from reports.sweep import render_sweep_report

__all__ = ["render_experiment_report", "render_sweep_report"]

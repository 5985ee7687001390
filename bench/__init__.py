"""Benchmarks of the harness as ratios against the obvious alternative, measured side by side in one run.

`python -m bench` (or `make bench`) prints one line per figure, `name: ratio (detail)`; see bench/README.md.
"""

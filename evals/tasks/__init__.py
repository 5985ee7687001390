"""lm-eval task definitions for the domain evaluations (YAML) and their Python hooks."""

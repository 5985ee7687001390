"""Preference data, one way through: `rows` (reading and parsing, the leaf) -> `checks` (what can
poison a run) -> `feedback` (production thumbs) and `verifiable` (the built-in prompts with rule
verifiers) -> `rounds` (pairs from candidate answers) -> `loading` (the data a run trains on)."""

"""Domain exceptions. The CLI turns `HarnessInputError` into exit code 2 with its message, no traceback."""
from __future__ import annotations


class HarnessInputError(Exception):
    """Bad input from the user: a config, a data file, a path. Exit code 2."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or []
        full = message if not self.problems else message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(full)


class ConfigError(HarnessInputError):
    pass


class DataError(HarnessInputError):
    pass

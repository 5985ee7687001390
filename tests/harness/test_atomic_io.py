"""The one atomic writer (harness.atomic_io) every cache, task file and report page goes through: a write
that fails leaves the old file and no temp file behind, an unchanged task file is left alone (a reader keyed
on it stays valid), and a report page is readable by others (a temp file is created 0600)."""
import os
import stat

import pytest

from evals.domain_data import write_task_data
from harness.atomic_io import write_bytes_atomic
from reports.common import write_page_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "cache.json"
    write_bytes_atomic(path, b"old")

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]


def test_an_unchanged_task_file_is_left_alone_and_a_changed_one_replaced(tmp_path):
    paths = write_task_data(tmp_path)
    first = {task: os.stat(p).st_ino for task, p in paths.items()}
    again = write_task_data(tmp_path)
    assert {task: os.stat(p).st_ino for task, p in again.items()} == first  # not rewritten
    path = next(iter(paths.values()))
    write_bytes_atomic(path, b"edited\n", skip_unchanged=True)
    assert path.read_bytes() == b"edited\n" and os.stat(path).st_ino != first[next(iter(paths))]


def test_a_report_page_is_readable_by_others(tmp_path):
    page = tmp_path / "report.html"
    write_page_atomic(page, "<p>é</p>")
    assert stat.S_IMODE(os.stat(page).st_mode) == 0o644 and page.read_text("utf-8") == "<p>é</p>"
    write_bytes_atomic(tmp_path / "cache.json", b"{}")
    assert stat.S_IMODE(os.stat(tmp_path / "cache.json").st_mode) == 0o600  # caches stay private


def test_an_exclusive_create_keeps_the_first_writers_file(tmp_path):
    from harness.atomic_io import create_json_exclusive

    path = tmp_path / "plans" / "p.json"
    assert create_json_exclusive(path, {"budget": 16}) is True
    assert create_json_exclusive(path, {"budget": 64}) is False
    assert '"budget": 16' in path.read_text() and [p.name for p in path.parent.iterdir()] == ["p.json"]

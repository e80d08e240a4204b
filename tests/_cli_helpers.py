"""Helpers shared by tests that drive the CLI and fill in returned lists."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pipeline.cli import main
from pipeline.vocabulary import LIST_COLUMNS

LIST_KEYS = [c.key for c in LIST_COLUMNS]


def run_captured(config_file: Path, *args: str) -> tuple[int, str, str]:
    """``outreach --config FILE ARGS...`` in this process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["--no-progress", "--log-level", "WARNING", "--config", str(config_file), *args]
        )
    return code, out.getvalue(), err.getvalue()


def set_cell(row: list[str], **values: str) -> list[str]:
    """A copy of a list row with some columns (by key) replaced."""
    row = list(row)
    for key, value in values.items():
        row[LIST_KEYS.index(key)] = value
    return row


def get_cell(row: list[str], key: str) -> str:
    return row[LIST_KEYS.index(key)]

"""tools/compare_outputs.py: two output roots compared file by file (before/after a change)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd


def _tool(repo_root: Path):
    path = repo_root / "tools" / "compare_outputs.py"
    spec = importlib.util.spec_from_file_location("compare_outputs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _root(root: Path, dictionary: str, value: int) -> Path:
    folder = root / "features" / "as_of=2024-04"
    folder.mkdir(parents=True)
    (folder / "data_dictionary.csv").write_text(dictionary, encoding="utf-8")
    pd.DataFrame({"x": [value]}).to_parquet(folder / "part.parquet")
    return root


def test_a_changed_data_dictionary_is_reported_not_read_as_parquet(tmp_path, repo_root):
    """The data dictionaries are text: a difference is a line, not a crash (it once opened a
    differing data_dictionary.csv as Parquet)."""
    tool = _tool(repo_root)
    before = _root(tmp_path / "before", "column,meaning\nx,a count\n", 1)
    after = _root(tmp_path / "after", "column,meaning\nx,a count of months\n", 1)
    items = {item.name: item for item in tool.compare(before, after)}
    dictionary = items["features/as_of=2024-04/data_dictionary.csv"]
    assert dictionary.status == "DIFFERENT" and "line 2" in dictionary.detail
    assert items["features/as_of=2024-04/part.parquet"].status == "same"

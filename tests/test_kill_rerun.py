"""``kill -9`` in the middle of a stage, then the same command again.

For ingest, features and score (twice: once while it builds the round, once while its MLflow run
is open), on a private copy of the scored sample with two local workers: the command runs until
its work has visibly started (its ``.building`` folder; for the second score case its MLflow
run), then a seeded random delay more (none for the MLflow run, open for a fraction of a second),
and is killed outright. Then:

- every worker of the killed run is gone within 2 s (they die with their parent);
- the previous good outputs are untouched;
- the same command run again exits 0, cleans up what the killed run left (no ``.building``,
  ``.old``, ``.parts`` or ``*.tmp`` left) and ends its MLflow run as FAILED (none RUNNING);
- its outputs are those of a clean run (the session's sample: sha256 of Parquet and CSV files,
  XLSX cell values).

Train, killed 0..8 s after its start, is the same test in tests/test_mlflow_lineage.py: that
module's second training is the rerun (one training for both). The mechanics are in
tests/_kill_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _kill_helpers import (
    KillCase,
    building,
    kill_in_the_middle,
    leftovers,
    mlflow_run_open,
    rerun,
    runs,
)
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.io import sha256_file

CASES = [
    KillCase("ingest", ("ingest",), building("", "staged"), 1.5),
    KillCase("features", ("features",), building("features", "as_of={as_of}"), 1.5),
    KillCase("score", ("score", "--force"), building("rounds", "{as_of}"), 2.0),
    # the scoring run is open for a fraction of a second: killed as soon as it is seen
    KillCase("score-mlflow", ("score", "--force"), mlflow_run_open("score"), 0.0),
]


def _xlsx_values(path: Path) -> list[list[object]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    return [[list(row) for row in sheet.iter_rows(values_only=True)] for sheet in book.worksheets]


def _contents(folder: Path) -> dict[str, object]:
    """What must be identical between two runs: sha256 of every Parquet and CSV file, the cell
    values of every XLSX file (JSON records hold times and run ids; they are left out)."""
    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.suffix in (".parquet", ".csv"):
            out[name] = sha256_file(path)
        elif path.suffix == ".xlsx":
            out[name] = _xlsx_values(path)
    return out


def _previous(case: KillCase, copy: ScoredSample) -> object:
    """The previous good outputs the case must leave untouched."""
    root = copy.config.paths.output_root
    if case.name == "ingest":
        return _contents(root / "staged")
    if case.name == "features":
        return _contents(root / "features" / f"as_of={copy.as_of}")
    return _contents(copy.round_dir)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_killed_stage_leaves_the_last_outputs_and_the_rerun_cleans_up(
    case: KillCase, scored_sample: ScoredSample, tmp_path
):
    copy = copy_outputs(scored_sample, tmp_path)
    config = copy.config.with_overrides(runtime={"workers": 2})
    config_file = write_config_file(config, copy.config_file)
    root = config.paths.output_root
    before = _previous(case, copy)

    survivors = kill_in_the_middle(config_file, case, root, copy.as_of)
    assert survivors == [], f"processes of the killed {case.name} still alive: {survivors}"
    assert _previous(case, copy) == before  # the last good outputs are intact

    again = rerun(config_file, case.argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert leftovers(root) == []
    running = [r.info.run_id for r in runs(config) if r.info.status == "RUNNING"]
    assert running == []
    failed = [r for r in runs(config) if r.info.status == "FAILED"]
    for run in failed:
        assert "killed" in run.data.tags.get("outreach.failed_reason", "")
    if case.name == "score-mlflow":
        assert len(failed) == 1  # the killed run's own scoring run

    clean_root = scored_sample.config.paths.output_root
    if case.name == "ingest":
        assert _contents(root / "staged") == _contents(clean_root / "staged")
    elif case.name == "features":
        folder = f"features/as_of={copy.as_of}"
        assert _contents(root / folder) == _contents(clean_root / folder)
    else:
        assert _contents(copy.round_dir) == _contents(scored_sample.round_dir)
        kept = root / "rounds" / "_replaced" / f"{copy.as_of}-1"
        assert _contents(kept) == _contents(scored_sample.round_dir)  # moved aside, whole

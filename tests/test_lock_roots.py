"""Which root each command locks (pipeline.stages.lock_root)."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import build_parser
from pipeline.config import Config
from pipeline.stages import lock_root, stage_named


def _root_of(argv: list[str], output_root: Path) -> Path | None:
    args = build_parser().parse_args(argv)
    config = Config().with_overrides(paths={"output_root": str(output_root)})
    return lock_root(config, stage_named(args.stage), args)


def test_an_office_opening_its_bundle_or_making_keys_locks_nothing(tmp_path: Path) -> None:
    # An office runs `export open` where no output root exists: it must not get one made.
    assert _root_of(["export", "open", "b.bundle", "--out", "x"], tmp_path / "o") is None
    assert _root_of(["export", "keygen", "--emd", "1111051000", "--out", "k"], tmp_path) is None


def test_exporting_a_round_and_the_writing_stages_lock_the_output_root(tmp_path: Path) -> None:
    assert _root_of(["export"], tmp_path) == tmp_path
    assert _root_of(["retention", "--dry-run"], tmp_path) == tmp_path
    assert _root_of(["audit"], tmp_path) is None

"""The typed configuration: defaults, the committed configs, and one-line errors."""

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Config, ConfigError, load_config


def test_embedded_defaults_equal_the_sample_config(repo_root):
    sample = load_config(repo_root / "configs" / "sample.yaml")
    assert sample.model_dump(exclude={"source"}) == Config().model_dump(exclude={"source"})


def test_bench_config_is_benchmark_scale(repo_root):
    bench = load_config(repo_root / "configs" / "bench.yaml")
    assert bench.generator.households == 200_000
    assert bench.paths.output_root != Config().paths.output_root


def test_window_end_is_configuration_not_the_clock():
    config = Config().with_overrides(window={"end": "2025-12"})
    assert config.window.round_labels()[-1] == "2025-12"
    assert config.window.round_labels()[0] == "2024-04"
    assert config.window.months == 27


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generator:\n  households: -5\n", "generator.households"),
        ("window:\n  end: '2026-13'\n", "window.end"),
        ("generator:\n  housholds: 10\n", "generator.housholds: unknown key"),
        ("generator:\n  selection:\n    central_rule_share: 0.9\n", "must be 1"),
        ("window:\n  start: '2026-01'\n  end: '2025-01'\n", "before start"),
        ("runtime:\n  workers: many\n", "runtime.workers"),
        ("- just\n- a list\n", "mapping"),
        ("generator: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_values_give_one_line_errors_naming_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = _write(tmp_path, "generator:\n  seed: -1\n")
    code = main(["--config", str(path), "describe"])
    err = capsys.readouterr().err
    assert code == 2
    assert "generator.seed" in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_yaml_is_parsed_as_the_safe_loader_parses_it_and_errors_keep_their_line(tmp_path):
    """pipeline.io.parse_yaml (libyaml's safe loader where present) reads every committed
    config as yaml.safe_load does, refuses what the safe loader refuses, and a config's YAML
    error still names its line."""
    import yaml

    from pipeline.io import parse_yaml

    for path in sorted(Path("configs").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert parse_yaml(text) == yaml.safe_load(text), path
    with pytest.raises(yaml.YAMLError):
        parse_yaml("!!python/object/apply:os.system ['true']\n")
    path = _write(tmp_path, "window:\n  end: '2026-09'\ngenerator: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)

"""The service catalogue (configs/services.yaml): every kind of need served, codes unique,
need types and income bands from the shared vocabulary; a bad file names what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from pipeline.catalogue import load_services
from pipeline.config import ConfigError
from pipeline.vocabulary import NEED_TYPES

SERVICES = REPO_ROOT / "configs" / "services.yaml"


def test_the_committed_catalogue_serves_every_kind_of_need():
    services = load_services(SERVICES)
    assert len(services.services) >= 14
    for need in NEED_TYPES:
        assert services.serving(need), need
    names = {s.code: s.name_ko for s in services.services}
    assert names["livelihood_benefit"] == "생계급여" and names["debt_adjustment"].startswith(
        "채무조정"
    )
    assert {s.sector for s in services.services} == {"public", "private", "other"}


def _write(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SERVICES.read_text(encoding="utf-8"))
    change(data["services"])
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s[0].update(need_types=["money"]), "unknown need type 'money'"),
        (lambda s: s.append(dict(s[0])), "service code 'livelihood_benefit' given twice"),
        (
            lambda s: [x.update(need_types=["income"]) for x in s if "debt" in x["need_types"]],
            "no service serves the need type 'debt'",
        ),
        (lambda s: s[0]["eligible"].update(income_bands=["poor"]), "unknown income band 'poor'"),
    ],
)
def test_a_bad_catalogue_is_refused_with_what_is_wrong(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_services(_write(tmp_path, change))


_PICKLE_DIGEST = """
import hashlib, pickle, sys
from pathlib import Path
from pipeline.catalogue import load_services
from pipeline.config import Config
config = Config()
catalogue = load_services(Path(sys.argv[1]))
print(hashlib.sha256(pickle.dumps((catalogue, config.training.service_match, config))).hexdigest())
"""


def test_catalogues_and_settings_pickle_to_the_same_bytes_in_every_process(repo_root):
    """The registered model pickles the service catalogue and its settings: their bytes must not
    follow the process's string-hash seed (pydantic keeps the set fields in a ``set``), so that
    two identical trainings register byte-identical model files."""
    digests = set()
    for seed in ("1", "2", "3", "4"):
        out = subprocess.run(
            [sys.executable, "-c", _PICKLE_DIGEST, str(repo_root / "configs" / "services.yaml")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            cwd=repo_root,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1

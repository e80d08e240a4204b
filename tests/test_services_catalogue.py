"""The service catalogue (configs/services.yaml): every kind of need served, codes unique,
need types and income bands from the shared vocabulary; a bad file names what is wrong."""

from __future__ import annotations

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

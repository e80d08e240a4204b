"""The catalogues a command works with, loaded once at its entry and passed down.

``configs/indicators.yaml`` (crisis information), ``configs/outcomes.yaml`` (visit outcomes and
selection reasons), ``configs/features.yaml`` (the feature spec) and ``configs/services.yaml``
(the services a visit can link, and the rule mapping's signal groups), as named by the config's
``paths``. Stage functions take a :class:`Catalogues`; nothing below a command reads the YAML
files again.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.spec import FeatureSpec, load_feature_spec
from pipeline.catalogue import (
    IndicatorCatalogue,
    OutcomeCatalogue,
    ServiceCatalogue,
    load_indicators,
    load_outcomes,
    load_services,
)
from pipeline.config import Config


@dataclass(frozen=True)
class Catalogues:
    """The indicator, outcome and service catalogues and the feature spec of a run."""

    indicators: IndicatorCatalogue
    outcomes: OutcomeCatalogue
    features: FeatureSpec
    services: ServiceCatalogue


def load_catalogues(config: Config) -> Catalogues:
    """Read and validate the four catalogues named by ``config.paths`` (ConfigError naming the
    file and key when one is wrong); every indicator group must point to kinds of need."""
    indicators = load_indicators(config.paths.indicators)
    services = load_services(config.paths.services)
    services.check_groups(indicators.groups, config.paths.services)
    return Catalogues(
        indicators=indicators,
        outcomes=load_outcomes(config.paths.outcomes),
        features=load_feature_spec(config.paths.features),
        services=services,
    )

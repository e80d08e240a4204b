"""The simulation's model policies as config overrides: what each one changes."""

from __future__ import annotations

from models.gates import decision, evaluate_gates
from pipeline.config import Config
from pipeline.simulate.policies import policy_overrides

# figures every gate rejects: validation failed, no lift, miscalibrated, groups flagged, and
# worse than the champion
FAILING = {
    "validation_passed": False,
    "candidate_metric": 0.30,
    "rule_metric": 0.40,
    "ece": 0.20,
    "ece_noise": 0.01,
    "fairness_flags": 3,
    "champion_metric": 0.90,
    "champion_version": "1",
}


def _policy(config: Config, policy: str) -> Config:
    return config.with_overrides(**policy_overrides(config, policy))


def test_the_broken_loop_promotes_every_model_and_is_not_the_loop_without_exploration():
    """With plain labels the default (issue 20), `champion_broken` once was the same policy as
    `champion_no_exploration`; it is the loop that also promotes whatever it trains."""
    base = Config()
    assert base.training.selective_labels.method == "plain"
    broken, quiet = _policy(base, "champion_broken"), _policy(base, "champion_no_exploration")
    for config in (broken, quiet):
        assert config.scoring.exploration_share == 0.0
        assert config.training.selective_labels.method == "plain"
    promoted, reason = decision(evaluate_gates(broken.training.gates, **FAILING))
    assert promoted and "waived" in reason
    assert not decision(evaluate_gates(quiet.training.gates, **FAILING))[0]
    assert not decision(evaluate_gates(_policy(base, "champion").training.gates, **FAILING))[0]

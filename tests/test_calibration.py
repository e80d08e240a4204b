"""Calibration: beta calibration keeps the model's order, the pooled ECE and its noise floor, and
the calibration gate (issue 23: ECE was 0.05 at 200,000 households with Platt scaling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from models.backtest import add_pooled_calibration
from models.candidates import CalibratedClassifier, _beta_inputs
from models.gates import calibration_gate
from models.metrics import calibration_metrics, calibration_noise


class _Fixed:
    """A fitted stand-in whose probability is one input column: the calibrator alone is tested."""

    def fit(self, X, y, sample_weight=None):
        return self

    def predict_proba(self, X):
        p = X["raw"].to_numpy(dtype=np.float64)
        return np.column_stack([1 - p, p])


def _bent(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Scores whose true probability bends unlike a logistic curve: a beta-family map with
    unequal exponents (3 on ln s, 0.3 on -ln(1-s)); Platt scaling forces them equal."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.02, 0.98, rows)
    truth = 1 / (1 + np.exp(-(1.0 + 3.0 * np.log(raw) - 0.3 * np.log1p(-raw))))
    y = (rng.random(rows) < truth).astype(np.int64)
    return pd.DataFrame({"raw": raw}), y, truth


def _calibrated(method: str, X: pd.DataFrame, y: np.ndarray) -> CalibratedClassifier:
    held = np.ones(len(y), dtype=bool)
    held[:10] = False  # the stand-in needs some training rows of both classes
    y = y.copy()
    y[:2] = [0, 1]
    return CalibratedClassifier(_Fixed(), method=method, prefit=True).fit(
        X, y, calibration_mask=held
    )


def test_beta_calibration_follows_a_bent_curve_that_platt_scaling_cannot():
    X, y, _ = _bent(20_000, 1)
    test, y_test, truth = _bent(20_000, 2)
    ece, error = {}, {}
    for method in ("sigmoid", "beta"):
        p = _calibrated(method, X, y).predict_proba(test)[:, 1]
        ece[method] = calibration_metrics(p, y_test)[0]["ece"]
        error[method] = np.abs(p - truth).max()
    assert ece["beta"] < 0.015 < ece["sigmoid"]
    assert error["beta"] < 0.03 < 0.08 < error["sigmoid"]


@pytest.mark.parametrize("method", ["sigmoid", "beta", "centered_isotonic"])
def test_calibration_keeps_the_models_order_without_ties(method):
    X, y, _ = _bent(5_000, 3)
    p = _calibrated(method, X, y).predict_proba(X)[:, 1]
    order = np.argsort(X["raw"].to_numpy())
    assert np.all(np.diff(p[order]) > 0)  # strictly increasing: no household ties another


def _s_shaped(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Scores whose true probability is an S no beta map can follow: flat at 0.15 for the lower
    half of the scores, then rising steeply (as a model trained with added negatives ranks the
    visits: docs/training.md, "Calibration")."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.02, 0.98, rows)
    truth = 0.15 + 0.7 / (1 + np.exp(-12 * (raw - 0.6)))
    y = (rng.random(rows) < truth).astype(np.int64)
    return pd.DataFrame({"raw": raw}), y, truth


def test_centered_isotonic_follows_an_s_shaped_curve_that_beta_calibration_cannot():
    X, y, _ = _s_shaped(20_000, 11)
    test, y_test, truth = _s_shaped(20_000, 12)
    ece, error = {}, {}
    for method in ("beta", "isotonic", "centered_isotonic"):
        p = _calibrated(method, X, y).predict_proba(test)[:, 1]
        ece[method] = calibration_metrics(p, y_test)[0]["ece"]
        error[method] = np.abs(p - truth).mean()
    assert ece["centered_isotonic"] < 0.015 and error["centered_isotonic"] < 0.02
    assert error["centered_isotonic"] < error["isotonic"]  # no steps
    assert error["beta"] > 2 * error["centered_isotonic"]


def test_centered_isotonic_ties_only_what_the_model_ties_and_stays_a_probability():
    X, y, _ = _s_shaped(3_000, 13)
    model = _calibrated("centered_isotonic", X, y)
    raw = np.array([1e-9, 0.001, 0.02, 0.3, 0.3, 0.7, 0.98, 0.999, 1 - 1e-9])
    p = model.calibrate(raw)
    assert np.all((p > 0) & (p < 1))
    assert p[3] == p[4]  # equal raw probabilities, equal calibrated ones
    assert np.all(np.diff(np.delete(p, 4)) > 0)  # beyond the fitted range too: it extends
    steps = _calibrated("isotonic", X, y).predict_proba(X)[:, 1]
    assert len(np.unique(steps)) < len(X) / 20  # isotonic regression: steps that tie households


def test_centered_isotonic_with_one_rate_gives_that_rate():
    from models.candidates import CenteredIsotonic

    model = CenteredIsotonic().fit(np.array([0.2, 0.4, 0.6, 0.8]), np.array([0, 0, 0, 0]))
    assert np.allclose(model.predict(np.array([0.1, 0.9])), 0.5 / 4)


def test_beta_calibration_keeps_its_coefficients_non_negative_rather_than_reverse_the_order():
    rng = np.random.default_rng(4)
    raw = rng.uniform(0.01, 0.99, 4_000)
    # need falls at both ends: a free beta map would bend down somewhere
    y = (rng.random(len(raw)) < 0.8 - 0.6 * np.abs(raw - 0.5)).astype(np.int64)
    model = _calibrated("beta", pd.DataFrame({"raw": raw}), y)
    assert model.beta_constraint_ == "b=0"  # -ln(1-p) dropped, ln p kept
    assert (model.calibrator_.coef_ >= 0).all()
    p = model.predict_proba(pd.DataFrame({"raw": np.sort(raw)}))[:, 1]
    assert np.all(np.diff(p) >= 0)


def _flat_low(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Scores whose true map depends on -ln(1-s) only (beta's ln s coefficient is 0), with a
    slight dip at the bottom, so that a free fit puts a small negative coefficient on ln s:
    the case of seed 90210's backtest round 2026-08 (a = -0.01)."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.01, 0.95, rows)
    truth = 1 / (1 + np.exp(-(-1.5 + 1.9 * -np.log1p(-raw) - 0.04 * np.log(raw))))
    y = (rng.random(rows) < truth).astype(np.int64)
    return pd.DataFrame({"raw": raw}), y, truth


def test_beta_calibration_drops_a_negative_coefficient_instead_of_falling_back_to_platt():
    X, y, _ = _flat_low(20_000, 7)
    test, y_test, truth = _flat_low(40_000, 8)
    model = _calibrated("beta", X, y)
    assert model.beta_constraint_ == "a=0"
    assert model.calibrator_.coef_[0, 0] == 0 and model.calibrator_.coef_[0, 1] > 0
    p = model.predict_proba(test)[:, 1]
    platt = _calibrated("sigmoid", X, y).predict_proba(test)[:, 1]
    ece = calibration_metrics(p, y_test)[0]["ece"]
    ece_platt = calibration_metrics(platt, y_test)[0]["ece"]
    assert ece < 0.01 < 0.02 < ece_platt  # the old fallback (Platt) cannot follow this curve
    assert np.abs(p - truth).max() < 0.05 < np.abs(platt - truth).max()
    order = np.argsort(test["raw"].to_numpy())
    assert np.all(np.diff(p[order]) >= 0)


def test_beta_calibration_with_positive_coefficients_is_the_free_fit():
    X, y, _ = _bent(5_000, 9)
    model = _calibrated("beta", X, y)
    assert model.beta_constraint_ == "none"
    held = np.ones(len(y), dtype=bool)
    held[:10] = False
    y = y.copy()
    y[:2] = [0, 1]
    free = LogisticRegression(C=1e6, max_iter=1000).fit(
        _beta_inputs(X["raw"].to_numpy()[held]), y[held]
    )
    np.testing.assert_allclose(model.calibrator_.coef_, free.coef_, rtol=1e-12)
    np.testing.assert_allclose(model.calibrator_.intercept_, free.intercept_, rtol=1e-12)


def test_calibration_noise_is_what_a_calibrated_model_shows_by_chance():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.1, 0.9, 450)
    noise = calibration_noise(p, bins=10, samples=300, seed=1)
    # calibrated labels stay under it about 95% of the time
    under = [
        calibration_metrics(p, (rng.random(len(p)) < p).astype(int))[0]["ece"] <= noise
        for _ in range(200)
    ]
    assert 0.88 <= np.mean(under) <= 0.995
    # a shifted model on the same households is well above it
    shifted = np.clip(p + 0.15, 0, 1)
    assert calibration_metrics(shifted, (rng.random(len(p)) < p).astype(int))[0]["ece"] > noise
    # more households, less noise
    assert calibration_noise(np.tile(p, 20), bins=10, samples=100, seed=1) < noise / 3


def test_pooled_ece_is_over_every_test_rounds_visits_together():
    rng = np.random.default_rng(6)
    frames = []
    for label in ("2026-04", "2026-06"):
        score = rng.uniform(0, 1, 300)
        observed = (rng.random(300) < score).astype("float64")
        frames.append(pd.DataFrame({"score": score, "observed": observed}))
        frames[-1]["round"] = label
    labelled = pd.concat(frames, ignore_index=True)
    labelled.loc[::7, "observed"] = np.nan  # visits without a result are left out
    labelled["observed"] = labelled["observed"].astype("Int8")
    summary = pd.DataFrame({"model": ["rule", "lightgbm"], "ece_mean": [np.nan, 0.1]})
    out = add_pooled_calibration(summary, {"lightgbm": labelled}, bins=10, seed=1)
    known = labelled["observed"].notna()
    expected = calibration_metrics(
        labelled.loc[known, "score"].to_numpy(), labelled.loc[known, "observed"]
    )[0]["ece"]
    row = out.set_index("model").loc["lightgbm"]
    assert row["ece_pooled"] == pytest.approx(expected, abs=1e-15)
    assert row["ece_noise95"] > 0
    assert np.isnan(out.set_index("model").loc["rule", "ece_pooled"])


def test_calibration_gate_passes_fails_and_says_when_noise_hides_the_difference():
    assert calibration_gate(0.03, 0.02, 0.05).passed
    noisy = calibration_gate(0.03, 0.045, 0.07)
    assert noisy.passed and "not distinguishable from noise" in noisy.detail
    assert not calibration_gate(0.03, 0.09, 0.07).passed
    assert not calibration_gate(0.03, 0.05, 0.02).passed
    assert not calibration_gate(0.03, None, 0.07).passed
    assert not calibration_gate(0.03, 0.05, None).passed

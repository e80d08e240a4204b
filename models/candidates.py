"""Candidate models: the rule baseline, logistic regression and LightGBM, with calibration.

All follow scikit-learn conventions: nothing happens in ``__init__``, ``fit`` returns self,
learned state ends in ``_``, randomness comes from an explicit ``random_state``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.config import LightGBMConfig, LogisticConfig
from pipeline.vocabulary import RULE_COLUMN, as_levels

_EPS = 1e-6


class RuleBaseline(ClassifierMixin, BaseEstimator):
    """The list before machine learning: distinct crisis types reported in the last 3 months.

    ``score`` is the count itself (ties are broken by household key when the list is cut);
    the rule lists only households with at least ``min_score`` crisis types.
    """

    def __init__(self, column: str = RULE_COLUMN, min_score: float = 1.0) -> None:
        self.column = column
        self.min_score = min_score

    def fit(self, X: pd.DataFrame, y: Any = None, sample_weight: Any = None) -> RuleBaseline:
        if self.column not in X.columns:
            raise ValueError(f"rule baseline needs the column {self.column}")
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.array([self.column], dtype=object)
        return self

    def score_households(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.column].fillna(0).to_numpy(dtype=np.float64)


def make_logistic(
    config: LogisticConfig, numeric: list[str], categorical: list[str], random_state: int
) -> Pipeline:
    """Imputation (median, with missing indicators) and scaling; one-hot categoricals."""
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    model = LogisticRegression(C=config.C, max_iter=config.max_iter, random_state=random_state)
    return Pipeline([("prepare", pre), ("model", model)])


def make_lightgbm(config: LightGBMConfig, random_state: int) -> LGBMClassifier:
    """LightGBM with row-wise histograms (much faster on sparse counts) and deterministic fits."""
    return LGBMClassifier(
        n_estimators=config.n_estimators,
        num_leaves=config.num_leaves,
        learning_rate=config.learning_rate,
        min_child_samples=config.min_child_samples,
        subsample=config.subsample,
        subsample_freq=1 if config.subsample < 1.0 else 0,
        colsample_bytree=config.colsample_bytree,
        reg_lambda=config.reg_lambda,
        n_jobs=config.n_jobs,
        random_state=random_state,
        force_row_wise=True,
        deterministic=True,
        verbose=-1,
    )


class LightGBMFitter(Protocol):
    """Fits a LightGBM model somewhere else (e.g. on a Dask cluster) and returns it fitted.

    ``fit`` gets an unfitted ``LGBMClassifier`` (its parameters are the ones to train with) and
    returns a fitted ``LGBMClassifier`` that predicts in this process.
    """

    def fit(
        self, estimator: LGBMClassifier, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray
    ) -> LGBMClassifier: ...


def _fit_with_weight(estimator: Any, X: pd.DataFrame, y: np.ndarray, w: np.ndarray) -> Any:
    if isinstance(estimator, Pipeline):
        return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__sample_weight": w})
    return estimator.fit(X, y, sample_weight=w)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p)).reshape(-1, 1)


def _beta_inputs(p: np.ndarray) -> np.ndarray:
    """The two inputs of beta calibration (Kull, Silva Filho and Flach, 2017): ln p, -ln(1-p)."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.column_stack([np.log(p), -np.log1p(-p)])


def fit_beta(raw: np.ndarray, y: np.ndarray) -> tuple[LogisticRegression, str]:
    """Beta calibration with non-negative coefficients, as its authors fit it.

    A logistic regression on ln p and -ln(1-p) (Kull, Silva Filho and Flach, 2017). A negative
    coefficient would reverse the model's order somewhere; then, as the authors' ``betacal``
    package does, that input is dropped (its coefficient fixed at 0) and the map refitted on the
    other one, which still bends. Returns the fitted regression (two coefficients, so that
    :meth:`CalibratedClassifier.calibrate` reads every case alike) and which constraint was used:
    ``none``, ``a=0`` (ln p dropped), ``b=0`` (-ln(1-p) dropped) or ``platt`` (one shared
    coefficient: only when the single-input refit is not increasing either).

    Earlier the fallback was always Platt scaling: on a 200,000-household seed a coefficient of
    -0.01 on ln p in one backtest round turned a pooled ECE of 0.024 into 0.033 (docs/training.md,
    "Calibration").
    """
    inputs = _beta_inputs(raw)
    model = LogisticRegression(C=1e6, max_iter=1000).fit(inputs, y)
    coef = model.coef_[0]
    if (coef >= 0).all():
        return model, "none"
    keep = int(np.argmax(coef))
    if coef[keep] > 0:
        one = LogisticRegression(C=1e6, max_iter=1000).fit(inputs[:, [keep]], y)
        if one.coef_[0, 0] > 0:
            model.coef_ = np.zeros((1, 2))
            model.coef_[0, keep] = one.coef_[0, 0]
            model.intercept_ = one.intercept_
            return model, "a=0" if keep == 1 else "b=0"
    # ln p - ln(1-p) is the logit: one shared coefficient is Platt scaling.
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw), y)
    model.coef_ = np.repeat(platt.coef_, 2, axis=1)
    model.intercept_ = platt.intercept_
    return model, "platt"


class CenteredIsotonic:
    """Centred isotonic regression (Oron and Flournoy, 2017), on the logit scale.

    Isotonic regression (pool adjacent violators) fits steps, and households on one step tie.
    Here each step is replaced by one point, at the mean logit of the raw probabilities it pools
    and the logit of its observed rate, and the map runs straight between these points and on
    beyond the first and last with the slope of its end segment. The steps' rates rise from one
    to the next, so the map rises everywhere: it bends as far as isotonic regression does and
    keeps the model's order, ties only where the raw probabilities tie.
    """

    def fit(self, raw: np.ndarray, y: np.ndarray) -> CenteredIsotonic:
        x = _logit(np.asarray(raw, dtype=np.float64)).ravel()
        order = np.argsort(x, kind="stable")
        x, y = x[order], np.asarray(y, dtype=np.float64)[order]
        steps = IsotonicRegression().fit_transform(x, y)
        starts = np.flatnonzero(np.r_[True, np.diff(steps) != 0])
        ends = np.r_[starts[1:], len(x)]
        # a step's rate is at least one in its size away from 0 and 1: half of that keeps the
        # logit finite and the points rising
        half = 0.5 / len(x)
        rates = np.clip(steps[starts], half, 1 - half)
        self.knots_x_ = np.array([x[s:e].mean() for s, e in zip(starts, ends, strict=True)])
        self.knots_y_ = _logit(rates).ravel()
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the raw probabilities ``raw``."""
        x = _logit(np.asarray(raw, dtype=np.float64)).ravel()
        kx, ky = self.knots_x_, self.knots_y_
        if len(kx) == 1:  # one step: every visit had the same rate
            return np.full(len(x), 1 / (1 + np.exp(-ky[0])))
        z = np.interp(x, kx, ky)
        low, high = x < kx[0], x > kx[-1]
        z[low] = ky[0] + (x[low] - kx[0]) * (ky[1] - ky[0]) / (kx[1] - kx[0])
        z[high] = ky[-1] + (x[high] - kx[-1]) * (ky[-1] - ky[-2]) / (kx[-1] - kx[-2])
        return 1 / (1 + np.exp(-z))


class CalibratedClassifier(ClassifierMixin, BaseEstimator):
    """A classifier fitted on some rows and calibrated on held-out rows (``calibration_mask``).

    ``method`` is ``sigmoid`` (Platt scaling on the logit), ``beta`` (beta calibration: a logistic
    regression on ln p and -ln(1-p), which can bend where Platt scaling cannot; its coefficients
    are kept non-negative (:func:`fit_beta`), so it keeps the model's order), ``isotonic`` (steps:
    households on one step tie, and ties are cut by key) or ``centered_isotonic``
    (:class:`CenteredIsotonic`: bends like isotonic, keeps the order). The held-out rows are
    chosen by the caller (the latest training rounds): never the test round. The calibrator is
    fitted unweighted, so probabilities estimate the chance that a visit finds need (the
    population of visited households), whatever weights the model itself was trained with.

    ``prefit=True``: ``estimator`` was already fitted on the rows outside ``calibration_mask``
    (for example on a Dask cluster); ``fit`` then only calibrates it on the held-out rows.
    """

    def __init__(
        self, estimator: Any = None, method: str = "sigmoid", prefit: bool = False
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.prefit = prefit

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        calibration_mask: np.ndarray | None = None,
    ) -> CalibratedClassifier:
        y = np.asarray(y, dtype=np.int64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        if calibration_mask is None:
            raise ValueError("calibration_mask is required: calibrate on held-out rows")
        held = np.asarray(calibration_mask, dtype=bool)
        if held.all() or not held.any():
            raise ValueError("calibration_mask must hold out some rows, not all")
        if len(np.unique(y[held])) < 2 or len(np.unique(y[~held])) < 2:
            raise ValueError("both classes are needed in the training and calibration rows")
        self.feature_names_in_ = np.array(list(X.columns), dtype=object)
        self.categories_ = {
            str(c): [str(v) for v in X[c].cat.categories]
            for c in X.columns
            if isinstance(X[c].dtype, pd.CategoricalDtype)
        }
        self.classes_ = np.array([0, 1])
        if self.prefit:
            self.estimator_ = self.estimator
        else:
            self.estimator_ = _fit_with_weight(clone(self.estimator), X[~held], y[~held], w[~held])
        raw = self.estimator_.predict_proba(X[held])[:, 1]
        if self.method == "isotonic":
            self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            self.calibrator_.fit(raw, y[held])
        elif self.method == "sigmoid":
            self.calibrator_ = LogisticRegression(C=1e6, max_iter=1000)
            self.calibrator_.fit(_logit(raw), y[held])
        elif self.method == "beta":
            self.calibrator_, self.beta_constraint_ = fit_beta(raw, y[held])
        elif self.method == "centered_isotonic":
            self.calibrator_ = CenteredIsotonic().fit(raw, y[held])
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        self.n_train_ = int((~held).sum())
        self.n_calibration_ = int(held.sum())
        return self

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """The input columns in training order, categoricals with the training levels."""
        frame = X[list(self.feature_names_in_)]
        changed = {}
        for column, levels in self.categories_.items():
            values = frame[column]
            if not (
                isinstance(values.dtype, pd.CategoricalDtype)
                and list(values.cat.categories) == levels
            ):
                changed[column] = as_levels(values, levels)
        return frame.assign(**changed) if changed else frame

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probability of need from the underlying model."""
        return self.estimator_.predict_proba(self.prepare(X))[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibrate(self.raw_proba(X))
        return np.column_stack([1 - p, p])

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of need from the underlying model's probability ``raw``."""
        if self.method in ("isotonic", "centered_isotonic"):
            p = self.calibrator_.predict(raw)
        elif self.method == "beta":
            p = self.calibrator_.predict_proba(_beta_inputs(raw))[:, 1]
        else:
            p = self.calibrator_.predict_proba(_logit(raw))[:, 1]
        return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def feature_importance(model: CalibratedClassifier) -> pd.Series:
    """Gain importance (LightGBM) or absolute standardised coefficient (logistic), descending."""
    base = model.estimator_
    if isinstance(base, LGBMClassifier):
        gain = base.booster_.feature_importance(importance_type="gain")
        series = pd.Series(gain, index=base.booster_.feature_name(), dtype=float)
    elif isinstance(base, Pipeline):
        names = base.named_steps["prepare"].get_feature_names_out()
        coef = np.abs(base.named_steps["model"].coef_[0])
        series = pd.Series(coef, index=names, dtype=float)
    else:  # pragma: no cover - no other candidate
        raise TypeError(type(base).__name__)
    return series.sort_values(ascending=False, kind="stable")

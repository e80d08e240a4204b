"""Scores of the registered model, and per-row contributions of its inputs to its (uncalibrated)
log-odds.

LightGBM: ``pred_contrib`` (TreeSHAP). Logistic regression: coefficient × transformed value,
summed back onto the input column it came from (scaled numbers, missing indicators, one-hot
levels). Calibration is monotone, so the order of contributions is that of the final score.

:class:`FrameScorer` converts a partition to model input once, for both the scores of every row
and the contributions of the listed rows. For LightGBM it builds the float matrix LightGBM would
build from the DataFrame itself, in one array instead of three frame copies, and only from the
inputs the trees split on (:func:`used_inputs`): a tree never reads another input, so its value
changes neither the score nor the contributions (TreeSHAP gives such an input exactly 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import Booster, LGBMClassifier
from sklearn.pipeline import Pipeline

from models.candidates import CalibratedClassifier


def _input_of(name: str, inputs: list[str]) -> int:
    """Index of the input column a transformed column comes from (-1 if none)."""
    position = {c: i for i, c in enumerate(inputs)}
    if name in position:
        return position[name]
    if name.startswith("missingindicator_") and name.removeprefix("missingindicator_") in position:
        return position[name.removeprefix("missingindicator_")]
    best = -1
    for column, i in position.items():
        if name.startswith(f"{column}_") and (best < 0 or len(column) > len(inputs[best])):
            best = i
    return best


def contributions(model: CalibratedClassifier, X: pd.DataFrame, threads: int = 1) -> np.ndarray:
    """(rows × inputs) contributions, inputs in ``model.feature_names_in_`` order (no bias)."""
    prepared = model.prepare(X)
    inputs = list(model.feature_names_in_)
    if len(prepared) == 0:
        return np.zeros((0, len(inputs)))
    base = model.estimator_
    if isinstance(base, LGBMClassifier):
        values = base.booster_.predict(prepared, pred_contrib=True, num_threads=threads)
        return np.asarray(values, dtype=np.float64)[:, :-1]
    if isinstance(base, Pipeline):
        pre = base.named_steps["prepare"]
        coef = base.named_steps["model"].coef_[0]
        matrix = pre.transform(prepared)
        matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        per_output = matrix * coef
        target = np.array([_input_of(n, inputs) for n in pre.get_feature_names_out()])
        out = np.zeros((len(prepared), len(inputs)))
        for j in np.unique(target[target >= 0]):
            out[:, j] = per_output[:, target == j].sum(axis=1)
        return out
    raise TypeError(f"no contributions for a {type(base).__name__} model")


def booster_of(model: CalibratedClassifier) -> Booster | None:
    """The LightGBM booster under ``model``, or None for another kind of model."""
    base = model.estimator_
    return base.booster_ if isinstance(base, LGBMClassifier) else None


def used_inputs(model: CalibratedClassifier) -> list[str]:
    """The input columns the model reads: LightGBM's split features, else every input."""
    inputs = [str(c) for c in model.feature_names_in_]
    booster = booster_of(model)
    if booster is None:
        return inputs
    splits = booster.feature_importance(importance_type="split")
    return [c for c, n in zip(inputs, splits, strict=True) if n > 0]


def input_columns(
    model: CalibratedClassifier, frame: pd.DataFrame
) -> tuple[list[np.ndarray | None], np.dtype]:
    """Every LightGBM input of ``model`` (in ``feature_names_in_`` order) as LightGBM reads it
    from a DataFrame: categoricals as codes of the training levels (NaN when missing), numbers in
    a float type that holds them exactly (float32 for float32 and small integer features).
    None for an input that ``frame`` lacks; also returns the float type."""
    booster = booster_of(model)
    if booster is None:
        raise TypeError(f"no LightGBM inputs for a {type(model.estimator_).__name__} model")
    inputs = [str(c) for c in model.feature_names_in_]
    categorical = [c for c in inputs if c in model.categories_]
    levels = dict(zip(categorical, booster.pandas_categorical or [], strict=True))
    numeric = [c for c in inputs if c in frame.columns and c not in levels]
    dtype = np.result_type(np.float32, *(np.dtype(frame[c].dtype) for c in numeric))
    columns: list[np.ndarray | None] = []
    for column in inputs:
        if column not in frame.columns:
            columns.append(None)
        elif column in levels:
            # Unknown levels and missing values are -1, as in pandas' categorical codes.
            codes = pd.Index(levels[column]).get_indexer(frame[column].astype("string"))
            columns.append(np.where(codes < 0, np.nan, codes).astype(dtype))
        else:
            columns.append(frame[column].to_numpy(dtype=dtype, na_value=np.nan))
    return columns, dtype


def fill_matrix(
    columns: list[np.ndarray | None], rows: slice | np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Write rows ``rows`` of ``columns`` into ``out`` (rows × inputs, made with
    :func:`empty_matrix`: inputs without values stay NaN) and return the filled part."""
    for j, values in enumerate(columns):
        if values is not None:
            out[:, j] = values[rows]
    return out


def empty_matrix(rows: int, inputs: int, dtype: np.dtype) -> np.ndarray:
    return np.full((rows, inputs), np.nan, dtype=dtype)


class FrameScorer:
    """Calibrated scores of a frame's rows and contributions of chosen rows, converting the
    frame's columns to model input once.

    LightGBM predicts chunk by chunk into one reused matrix: a whole partition's matrix (some
    hundred MB) costs more in fresh memory pages than the prediction gains from it.
    """

    CHUNK_ROWS = 16384

    def __init__(self, model: CalibratedClassifier, frame: pd.DataFrame, threads: int = 1) -> None:
        self.model = model
        self.frame = frame
        self.threads = threads
        self.booster = booster_of(model)
        self.columns: list[np.ndarray | None] = []
        self.dtype = np.dtype(np.float64)
        if self.booster is not None:
            self.columns, self.dtype = input_columns(model, frame)

    def scores(self) -> np.ndarray:
        """Calibrated probability of need of every row."""
        n = len(self.frame)
        if n == 0:
            return np.zeros(0)
        if self.booster is None:
            return self.model.predict_proba(self.frame)[:, 1]
        raw = np.empty(n, dtype=np.float64)
        buffer = empty_matrix(min(n, self.CHUNK_ROWS), len(self.columns), self.dtype)
        for start in range(0, n, self.CHUNK_ROWS):
            stop = min(n, start + self.CHUNK_ROWS)
            chunk = fill_matrix(self.columns, slice(start, stop), buffer[: stop - start])
            raw[start:stop] = self.booster.predict(chunk, num_threads=self.threads)
        return self.model.calibrate(raw)

    def contributions(self, positions: np.ndarray) -> np.ndarray:
        """Contributions (rows × inputs) of the rows at ``positions``; see :func:`contributions`."""
        if self.booster is None:
            return contributions(self.model, self.frame.iloc[positions], self.threads)
        if len(positions) == 0:
            return np.zeros((0, len(self.columns)))
        matrix = empty_matrix(len(positions), len(self.columns), self.dtype)
        fill_matrix(self.columns, np.asarray(positions), matrix)
        values = self.booster.predict(matrix, pred_contrib=True, num_threads=self.threads)
        return np.asarray(values, dtype=np.float64)[:, :-1]

"""Per-row contributions of the registered model's inputs to its (uncalibrated) log-odds.

LightGBM: ``pred_contrib`` (TreeSHAP). Logistic regression: coefficient × transformed value,
summed back onto the input column it came from (scaled numbers, missing indicators, one-hot
levels). Calibration is monotone, so the order of contributions is that of the final score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
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

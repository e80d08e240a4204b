"""What MLflow records of a dataset, from a :class:`models.dataset_summary.DatasetSummary`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.dataset_summary import DatasetSummary


def mlflow_digest(summary: DatasetSummary) -> str:
    """MLflow's pandas digest of the whole frame (compute_pandas_digest, step by step)."""
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

    trimmed = summary.head.head(MAX_ROWS)
    keep = summary.text.reindex(trimmed.columns, fill_value=False).to_numpy(dtype=bool)
    string_columns = trimmed.columns[keep]
    numeric_columns = trimmed.select_dtypes(include=[np.number]).columns
    trimmed = trimmed[string_columns.union(numeric_columns)]
    return get_normalized_md5_digest(
        [pd.util.hash_pandas_object(trimmed).values, np.int64(summary.rows)]
        + [str(x).encode() for x in summary.head.columns]
    )

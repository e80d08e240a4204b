"""Names of what the runs keep in MLflow: the artifact paths a training or scoring run writes
and the audit reads back. Defined once; writers and readers import them from here."""

from __future__ import annotations

# A training run's artifacts.
RESOLVED_CONFIG = "config/resolved_config.json"
RAW_FILES = "lineage/raw_files_sha256.json"  # raw file -> sha256
FEATURE_FOLDERS = "lineage/feature_folders.json"  # month -> the feature folder's digests
CAPACITY = "lineage/capacity.json"
VALIDATION_DIR = "validation"  # copies of the validation record the model was trained after
GATES = "gates.json"
MODEL_CARD = "model_card.md"
TRAINING_IMPORTANCE = "feature_importance.csv"  # importance per model input
DATA_SOURCES = "lineage/data_sources.json"  # the data-source catalogue as the run used it
FAIRNESS = "fairness/fairness.csv"
PROXY_CHECK = "fairness/proxy_check.csv"
OVERRIDES = "overrides/override_rates.json"  # caseworkers' overrides in the training rounds
# The high-impact AI file, generated from the run's record before it is sealed (models/ai_file.py)
AI_FILE = "ai_file/ai_file.md"

# A scoring run's artifacts.
ROUND_DIR = "round"  # the round manifest's copy

# Every run's sealed record (pipeline.tracking.seal).
SEAL_DIR = "seal"
SEAL = f"{SEAL_DIR}/seal.json"

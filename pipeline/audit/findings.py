"""What the audit says about a link: the link names, the four statuses and :class:`Finding`.

Owns the vocabulary every check and the command share: the name of each link (their order is
the chain's, in :mod:`pipeline.audit.chain`), ``ok``/``failed``/``unverifiable``/``skipped``, how a
list of problems becomes one finding (:func:`result`), the verdict (:func:`passed`), the small
helpers the checks phrase their problems with (:func:`short`, :func:`dig`,
:func:`compare_files`), and the paths of the MLflow artifacts the audit reads back. Pure: no
file, MLflow or git here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.datasets.rounds import MANIFEST as ROUND_MANIFEST
from pipeline.datasets.validation import VALIDATION_JSON
from pipeline.io import short_digest as short  # re-exported: the audit's messages use it
from pipeline.tracking import names

OK = "ok"
FAILED = "failed"
UNVERIFIABLE = "unverifiable"  # could not be checked here (no git); does not fail the audit
SKIPPED = "skipped"  # not checked because a fact it needs is not there; the audit fails anyway
DESTROYED = "destroyed"  # its data was destroyed under a recorded retention run: passes

# Link names (what the command prints and the tests look for); chain order in chain.CHAIN.
LIST_FILE = "list file"
MANIFEST = "round manifest"
LIST_ROWS = "list rows"
SCORING_RUN = "scoring run"
MODEL = "model version"
TRAINING_RUN = "training run"
TRAINING_DATA = "training data"
SCORING_FEATURES = "scoring features"
VALIDATION = "validation"
CODE = "code version"
RESCORE = "re-score"
REPORT_PAGES = "report pages"
STAGED_TABLES = "staged tables"
VALIDATION_FILES = "validation files"
RAW_INPUTS = "raw inputs"
SCORING_SEAL = "scoring seal"
TRAINING_SEAL = "training seal"
LEDGER = "ledger"
AI_FILE = "ai file"  # the high-impact AI file of the round's model (checks_ai_file)

# MLflow artifacts the audit reads back (named in pipeline.tracking.names, where the score and
# train stages take them from).
SCORING_MANIFEST_ARTIFACT = f"{names.ROUND_DIR}/{ROUND_MANIFEST}"  # scoring run: the manifest
FEATURE_FOLDERS_ARTIFACT = names.FEATURE_FOLDERS  # training run: month -> digests
RAW_FILES_ARTIFACT = names.RAW_FILES  # training run: raw file -> sha256
VALIDATION_ARTIFACT = f"{names.VALIDATION_DIR}/{VALIDATION_JSON}"  # training run: its record


@dataclass(frozen=True)
class Finding:
    """One link of the chain: its name, ok/failed/unverifiable/skipped, a one-line message."""

    link: str
    status: str
    message: str
    details: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status in (OK, UNVERIFIABLE, DESTROYED)


def result(link: str, problems: Sequence[str], ok_message: str) -> Finding:
    """A failed finding naming the first problem (and how many more), else an ok one."""
    if not problems:
        return Finding(link, OK, ok_message)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return Finding(link, FAILED, f"{problems[0]}{more}", tuple(problems))


def skipped(link: str, why: str) -> Finding:
    return Finding(link, SKIPPED, f"not checked: {why}")


def passed(findings: Sequence[Finding]) -> bool:
    """The verdict: every link ok (or unverifiable here), and at least one link checked."""
    return bool(findings) and all(f.passed for f in findings)


def dig(data: Mapping[str, Any], dotted: str) -> Any:
    """``dig(manifest, "model.version")``; None when a level is missing."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def compare_files(expected: Mapping[str, str], actual: Mapping[str, str], where: str) -> list[str]:
    """Problems between recorded and observed sha256 per relative path: missing, changed, extra."""
    problems = []
    for name in sorted(expected):
        if name not in actual:
            problems.append(f"{where}/{name}: missing (recorded sha256 {short(expected[name])})")
        elif actual[name] != expected[name]:
            problems.append(
                f"{where}/{name}: sha256 {short(actual[name])} differs from the recorded "
                f"{short(expected[name])}"
            )
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"{where}/{name}: not recorded (a file was added)")
    return problems

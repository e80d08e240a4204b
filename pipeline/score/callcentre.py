"""The phone tier for the automated first-contact call service (the ministry's AI 초기상담 calls).

One CSV per 시군구 (the call service works per local government), in the round folder
(``callcentre/calls_<시군구>.csv``, :func:`pipeline.datasets.rounds.call_export_file`), written by
``outreach score`` with the lists. The interface is fixed and versioned
(:data:`pipeline.datasets.rounds.CALL_COLUMNS`, ``interface_version``; docs/callcentre.md):

- one row per household of the phone tier of the 시군구's 읍면동, nothing else (no visit tier, no
  monitored household);
- the round, the 시군구 and 읍면동 codes, the pseudonymous household key (the call service
  resolves the contact details itself through the social-security system: no name, phone,
  address or resident number ever leaves the pipeline), a call id, the priority order and a
  short neutral purpose. No score, risk band, reason or selection: the call is a first contact,
  and what the model found is for the caseworker, not for a voice that calls the household;
- ``call_result`` and ``call_date`` empty, for the call service to fill in and send back
  (``outreach outcomes import-calls``).

:func:`call_frame` is pure; :func:`write_calls` writes the file atomically (UTF-8 with a BOM,
CRLF, every text field through :func:`pipeline.textsafe.spreadsheet_text`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from pipeline.datasets.rounds import CALL_COLUMNS, CALL_INTERFACE_VERSION, call_export_file
from pipeline.io import write_bytes
from pipeline.textsafe import spreadsheet_text
from pipeline.vocabulary import PHONE

# What the call is for, as the call service may say it: neutral, the same for every household
# (it names no crisis, no risk and no agency that reported anything).
CALL_PURPOSE = "복지 서비스 안내 및 초기 상담"


def call_id(round_label: str, sigungu: str, priority: int) -> str:
    """``202610-4111000000-00001``: round, 시군구, priority; unique within a round."""
    return f"{round_label.replace('-', '')}-{sigungu}-{priority:05d}"


def call_frame(scored: pd.DataFrame, round_label: str, sigungu: str) -> pd.DataFrame:
    """The call service's rows of one 시군구 (columns :data:`CALL_COLUMNS`, all text); pure.

    ``scored``: the 시군구's scored households (``household_key``, ``emd_code``, ``score``,
    ``tier``). Only the phone tier is kept. The priority is the order in which the service
    should call: highest calibrated risk first across the 시군구's 읍면동 (risks are comparable
    across 읍면동), equal risks by household key; the risk itself is not written.
    """
    phone = scored.loc[scored["tier"].astype("string") == PHONE, ["household_key", "emd_code"]]
    score = scored.loc[phone.index, "score"].astype("float64")
    order = pd.DataFrame(
        {
            "score": score.to_numpy(),
            "household_key": phone["household_key"].astype(str).to_numpy(),
            "emd_code": phone["emd_code"].astype(str).to_numpy(),
        }
    ).sort_values(["score", "household_key"], ascending=[False, True], kind="stable")
    priority = range(1, len(order) + 1)
    frame = pd.DataFrame(
        {
            "interface_version": CALL_INTERFACE_VERSION,
            "round": round_label,
            "sigungu_code": sigungu,
            "emd_code": order["emd_code"].to_numpy(),
            "household_key": order["household_key"].to_numpy(),
            "call_id": [call_id(round_label, sigungu, p) for p in priority],
            "priority": [str(p) for p in priority],
            "call_purpose": CALL_PURPOSE,
            "call_result": "",
            "call_date": "",
        },
        columns=list(CALL_COLUMNS),
    )
    return frame.astype("string").reset_index(drop=True)


def call_csv(frame: pd.DataFrame) -> bytes:
    """The file's bytes: UTF-8 with a BOM, CRLF, the header :data:`CALL_COLUMNS`, every field
    formula-safe (:func:`pipeline.textsafe.spreadsheet_text`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CALL_COLUMNS)
    for values in frame[list(CALL_COLUMNS)].itertuples(index=False):
        writer.writerow([spreadsheet_text(v) for v in values])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def write_calls(frame: pd.DataFrame, path: Path) -> Path:
    """Write :func:`call_frame`'s rows atomically (temp file beside it, then rename)."""
    write_bytes(call_csv(frame), path)
    return path


def export_phone_tier(
    scored: pd.DataFrame, round_label: str, sigungu: str, round_folder: Path
) -> Path:
    """Write the 시군구's call file into the round folder (a header only when its phone tier is
    empty, so that the service knows the 시군구 has no calls this round); returns the file."""
    frame = call_frame(scored, round_label, sigungu)
    return write_calls(frame, call_export_file(round_folder, sigungu))

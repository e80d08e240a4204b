"""Prove that two output roots of ``outreach run`` hold the same results.

Usage::

    .venv/bin/python tools/compare_outputs.py BEFORE_OUTPUT_ROOT AFTER_OUTPUT_ROOT [--json FILE]
        [-q|--quiet]

Run the pipeline once before and once after a change (for example a refactor of the package
layout), each into its own output root, then compare the two roots. One line is printed per item,
with status ``same``, ``DIFFERENT`` or ``missing`` (present on one side only):

1. sha256 of every Parquet file under ``features/`` and ``staged/``, and of each feature folder's
   ``data_dictionary.csv`` and ``data_dictionary.json``;
2. sha256 of ``rounds/<YYYY-MM>/scores.parquet`` (``rounds/_replaced`` is ignored);
3. sha256 of every CSV under ``rounds/<YYYY-MM>/lists/``;
4. the cell values of every sheet of every XLSX under ``rounds/<YYYY-MM>/lists/`` (the bytes are
   not compared);
5. the metrics of the training run: the latest FINISHED run with metrics in the MLflow experiment
   "welfare-outreach" of each ``mlflow/mlflow.db``; per key, the latest value and the whole
   history (step and value, not timestamps) must be equal.

Informational only (printed, never a failure): the training run's params, the JSON manifests
(each differing key is classified as ``volatile`` - timestamps, run ids, git commit and digests
that depend on them, which differ between any two runs - or ``other``), and the sha256 of the
round report pages.

The last line is ``N compared, M different, K missing`` over groups 1-5. Exit code 0 when every
item of groups 1-5 is the same, 1 otherwise, 2 on a usage error. ``--json FILE`` writes every
item as JSON; ``--quiet`` prints only items that are not the same.

The script uses only the standard library, pyarrow and openpyxl, and never imports the project's
own packages (their layout is what is being changed). The MLflow stores are opened read-only
with sqlite3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import sys
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
from openpyxl.utils import get_column_letter

ROUND = re.compile(r"^\d{4}-\d{2}$")
TRAINING_EXPERIMENT = "welfare-outreach"
# Manifest keys (last path component) expected to differ between two runs of the same code.
VOLATILE_KEYS = {
    "created_at",
    "started",
    "finished",
    "imported_at",
    "git_commit",
    "git_dirty",
    "run_id",
    "training_run_id",
    "validation_run_id",
    "tracking_uri",
    "record",
    "record_sha256",
    # digests of manifests that hold a timestamp (staged/_manifest.json "started")
    "staged_manifest_sha256",
    "manifest_sha256",
    "mlflow_digest",
    "training_features_digest",
}


@dataclass
class Item:
    group: str
    name: str
    status: str  # "same", "DIFFERENT" or "missing"
    detail: str = ""
    gating: bool = True


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rel_files(root: Path, patterns: list[str]) -> set[str]:
    found: set[str] = set()
    for pattern in patterns:
        for path in root.glob(pattern):
            rel = path.relative_to(root)
            if path.is_file() and (rel.parts[0] != "rounds" or ROUND.match(rel.parts[1])):
                found.add(rel.as_posix())
    return found


def pair(group: str, before: Path, after: Path, patterns: list[str], compare, gating=True):
    """One item per file matching ``patterns`` on either side; ``compare`` gives (same, detail)."""
    items = []
    for rel in sorted(rel_files(before, patterns) | rel_files(after, patterns)):
        b, a = before / rel, after / rel
        if not (b.is_file() and a.is_file()):
            side = "BEFORE" if b.is_file() else "AFTER"
            items.append(Item(group, rel, "missing", f"only in {side}", gating))
            continue
        same, detail = compare(b, a)
        items.append(Item(group, rel, "same" if same else "DIFFERENT", detail, gating))
    return items


def same_bytes(b: Path, a: Path) -> tuple[bool, str]:
    hb, ha = sha256(b), sha256(a)
    return hb == ha, "" if hb == ha else f"sha256 {hb[:12]} vs {ha[:12]}"


def same_parquet(b: Path, a: Path) -> tuple[bool, str]:
    same, detail = same_bytes(b, a)
    if same:
        return True, ""
    tb, ta = pq.read_table(b), pq.read_table(a)
    if not tb.schema.equals(ta.schema):
        return False, f"{detail}; schema differs"
    if tb.num_rows != ta.num_rows:
        return False, f"{detail}; rows {tb.num_rows} vs {ta.num_rows}"
    cols = [c for c in tb.column_names if not tb[c].equals(ta[c])]
    if cols:
        return False, f"{detail}; values differ in {len(cols)} column(s): {', '.join(cols[:5])}"
    return False, f"{detail}; table contents equal (bytes or metadata differ)"


def same_text(b: Path, a: Path) -> tuple[bool, str]:
    same, detail = same_bytes(b, a)
    if same:
        return True, ""
    lb, la = b.read_bytes().splitlines(), a.read_bytes().splitlines()
    line = next((i for i, (x, y) in enumerate(zip(lb, la, strict=False)) if x != y), None)
    where = f"line {line + 1}" if line is not None else f"{len(lb)} vs {len(la)} lines"
    return False, f"{detail}; first difference at {where}"


def xlsx_cells(path: Path) -> dict[str, list[tuple]]:
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return {ws.title: list(ws.iter_rows(values_only=True)) for ws in wb.worksheets}
    finally:
        wb.close()


def same_xlsx(b: Path, a: Path) -> tuple[bool, str]:
    cb, ca = xlsx_cells(b), xlsx_cells(a)
    if list(cb) != list(ca):
        return False, f"sheets {list(cb)} vs {list(ca)}"
    for sheet in cb:
        rb, ra = cb[sheet], ca[sheet]
        for r in range(max(len(rb), len(ra))):
            xb = rb[r] if r < len(rb) else ()
            xa = ra[r] if r < len(ra) else ()
            for c in range(max(len(xb), len(xa))):
                vb = xb[c] if c < len(xb) else None
                va = xa[c] if c < len(xa) else None
                if vb != va or type(vb) is not type(va):
                    cell = f"{sheet}!{get_column_letter(c + 1)}{r + 1}"
                    return False, f"first difference at {cell}: {vb!r} vs {va!r}"
    return True, ""


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def same_manifest(b: Path, a: Path) -> tuple[bool, str]:
    fb, fa = flatten(json.loads(b.read_text())), flatten(json.loads(a.read_text()))
    keys = sorted(k for k in fb.keys() | fa.keys() if fb.get(k, ...) != fa.get(k, ...))
    if not keys:
        return True, ""
    volatile = [k for k in keys if k.rsplit(".", 1)[-1] in VOLATILE_KEYS]
    other = [k for k in keys if k not in volatile]
    parts = [f"volatile: {', '.join(volatile)}"] if volatile else []
    parts += [f"other: {', '.join(other)}"] if other else []
    return False, "; ".join(parts)


def training_run(db: Path) -> tuple[str, dict[str, tuple], dict[str, str]]:
    """(run id, {metric key: (latest value, history)}, params) of the latest training run.

    The latest value is MLflow's own (table ``latest_metrics``); the history is every logged
    (step, value) sorted, without timestamps. NaN is kept as the text "nan" so it equals itself.
    """
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id"
            " WHERE e.name = ? AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'"
            " AND EXISTS (SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid)"
            " ORDER BY r.start_time DESC LIMIT 1",
            (TRAINING_EXPERIMENT,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no finished run with metrics in {TRAINING_EXPERIMENT!r}")
        run = row[0]
        history: dict[str, list[tuple]] = {}
        query = "SELECT key, step, value, is_nan FROM metrics WHERE run_uuid = ?"
        for key, step, value, is_nan in con.execute(query, (run,)):
            history.setdefault(key, []).append((step, "nan" if is_nan else repr(value)))
        query = "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?"
        latest = {k: "nan" if nan else repr(v) for k, v, nan in con.execute(query, (run,))}
        params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run,)))
    finally:
        con.close()
    metrics = {k: (latest.get(k), sorted(v)) for k, v in history.items()}
    return run, metrics, params


def compare_mlflow(before: Path, after: Path) -> list[Item]:
    db = "mlflow/mlflow.db"
    runs = []
    for root in (before, after):
        try:
            runs.append(training_run(root / db) if (root / db).is_file() else None)
        except (LookupError, sqlite3.Error) as exc:
            return [Item("5 metrics", db, "missing", f"{root}: {exc}")]
    if None in runs:
        side = "BEFORE" if runs[0] is not None else "AFTER"
        return [Item("5 metrics", db, "missing", f"only in {side}")]
    (run_b, hist_b, params_b), (run_a, hist_a, params_a) = runs
    print(f"training runs: {run_b} (before), {run_a} (after)")

    items = []
    for key in sorted(hist_b.keys() | hist_a.keys()):
        if key not in hist_b or key not in hist_a:
            side = "BEFORE" if key in hist_b else "AFTER"
            items.append(Item("5 metrics", key, "missing", f"only in {side}"))
            continue
        (lb, steps_b), (la, steps_a) = hist_b[key], hist_a[key]
        if lb != la:
            items.append(Item("5 metrics", key, "DIFFERENT", f"latest {lb} vs {la}"))
        elif steps_b != steps_a:
            diff = next((x, y) for x, y in zip_longest(steps_b, steps_a) if x != y)
            detail = f"latest equal, history differs: (step, value) {diff[0]} vs {diff[1]}"
            items.append(Item("5 metrics", key, "DIFFERENT", detail))
        else:
            items.append(Item("5 metrics", key, "same"))
    for key in sorted(params_b.keys() | params_a.keys()):
        vb, va = params_b.get(key), params_a.get(key)
        if vb is None or va is None:
            side = "BEFORE" if vb is not None else "AFTER"
            items.append(Item("params", key, "missing", f"only in {side}", False))
        else:
            status = "same" if vb == va else "DIFFERENT"
            detail = "" if vb == va else f"{vb!r} vs {va!r}"
            items.append(Item("params", key, status, detail, False))
    return items


def compare(before: Path, after: Path) -> list[Item]:
    rounds = "rounds/*"
    items = pair(
        "1 features+staged",
        before,
        after,
        ["features/**/*.parquet", "staged/**/*.parquet"],
        same_parquet,
    )
    dictionaries = ["features/*/data_dictionary.csv", "features/*/data_dictionary.json"]
    items += pair("1 features+staged", before, after, dictionaries, same_text)
    items += pair("2 scores", before, after, [f"{rounds}/scores.parquet"], same_parquet)
    items += pair("3 list csv", before, after, [f"{rounds}/lists/**/*.csv"], same_text)
    items += pair("4 list xlsx", before, after, [f"{rounds}/lists/**/*.xlsx"], same_xlsx)
    items += compare_mlflow(before, after)
    manifests = ["features/*/manifest.json", f"{rounds}/manifest.json", "staged/_manifest.json"]
    items += pair("manifests", before, after, manifests, same_manifest, gating=False)
    reports = [f"{rounds}/report/**/*.html", f"{rounds}/report/**/*.json"]
    items += pair("6 report", before, after, reports, same_bytes, gating=False)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="output root of the run before the change")
    parser.add_argument("after", type=Path, help="output root of the run after the change")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the items as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only items not the same")
    args = parser.parse_args(argv)
    for root in (args.before, args.after):
        if not root.is_dir():
            parser.error(f"{root} is not a directory")

    items = compare(args.before, args.after)
    group = None
    for item in items:
        if item.group != group:
            group = item.group
            print(f"== {group}" + ("" if item.gating else " (informational)"))
        if not (args.quiet and item.status == "same"):
            print(f"{item.status:<9}  {item.name}" + (f"  ({item.detail})" if item.detail else ""))

    gating = [i for i in items if i.gating]
    different = sum(i.status == "DIFFERENT" for i in gating)
    missing = sum(i.status == "missing" for i in gating)
    info = [i for i in items if not i.gating]
    info_off = sum(i.status != "same" for i in info)
    summary = f"{len(gating)} compared, {different} different, {missing} missing"
    if args.json:
        data = {"before": str(args.before), "after": str(args.after), "summary": summary}
        data["items"] = [asdict(i) for i in items]
        args.json.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    print(f"informational (params, manifests, report): {len(info)} compared, {info_off} not same")
    print(summary)
    return 0 if different == missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

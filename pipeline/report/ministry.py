"""The ministry's table: what became of a round's flagged households, per 시군구 and 읍면동, in the
words of the blind-spot programme (복지사각지대 발굴 실적), with small counts suppressed so that
no suppressed cell can be recovered from the published ones.

Pure functions over frames; nothing here reads files.

**The table** (:func:`ministry_table`). One row for the whole round (``total``), one per 시군구
and one per 읍면동 (each after its 시군구), from the round's cases (``pipeline.cases.round_cases``:
one row per listed household and per household a caseworker added). Columns, in this order:

- ``flagged`` = ``listed`` + ``added``: every household of the round's list (visit and phone
  tiers) plus the households caseworkers added;
- ``contacted``: reached by a visit or a call = public + private + no support + not eligible +
  in progress (the categories of ``CONTACTED``);
- one column per ``ministry_categories`` code of ``configs/outcomes.yaml`` (public support,
  private support, no support, not eligible, unreachable, in progress), then the no-support
  reasons (``no_support_reasons``), then ``not_returned`` and ``skipped`` (case statuses with no
  ministry category), so that the categories and the two statuses add up to ``flagged``.

The identities (:attr:`MinistryTable.row_identities`, and the column sums: a 시군구 row is the
sum of its 읍면동 rows, the total row the sum of the 시군구 rows) hold exactly on the counts.

**Suppression** (:func:`suppress`). Primary: a cell of 1 to k-1 households (``k`` =
``report.small_count``); zeros are published (they are not sensitive under the usual practice,
and an office with no such case is no one's secret). Secondary (complementary): a well-known
heuristic, every relation (identity) that holds a suppressed cell must hold at least two, whose
parts carry at least ``k`` households between them (:func:`_heuristic`, a work list over the
relations, the cheapest sufficient cell first: the smallest count that is large enough, a part
before the relation's total). Then the pattern is *verified* by linear programming
(:func:`audit`): for every primary cell, its smallest and largest value over all non-negative
tables that agree with the published cells and satisfy every identity; the cell is protected
when that interval is at least ``k`` wide (it then holds ``k + 1`` values, and always values
both below ``k`` and at least ``k``: the reader cannot even tell whether the cell was small).
Cells that fail get one more complementary cell (the largest count in one of their relations),
the heuristic runs again and the changed parts are verified again, until every primary cell is
protected.

The verification is sound by construction: a primary cell counts as protected only when two
whole tables were found, both consistent with everything published and every identity, whose
values of that cell differ by at least ``k``. They are found in restrictions of the whole
programme (some suppressed cells may move, every other cell keeps its true value, so every
solution of a restriction is a solution of the whole): (1) each 시군구's 읍면동 rows with its
시군구 row held (exact when that row is published); (2) for what that cannot show and for the
시군구 rows' cells, two 시군구 at a time with their 시군구 rows and the total row free (partners
sharing the most suppressed 시군구 cells first); (3) the rest in the exact programme of its
connected component (suppressed cells that share an identity) when it has at most
``exact_limit`` cells, else it counts as unprotected and more is suppressed. Each programme is
solved with HiGHS, re-solved from the last basis for one objective after another; a few
objectives move all of a part's primary cells at once, and only cells still narrow get their
own min and max. :func:`audit` gives the exact intervals of a whole (small) table.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.vocabulary import NO_SUPPORT, NOT_RETURNED, SKIPPED

if TYPE_CHECKING:
    from pipeline.catalogue import OutcomeCatalogue

TOTAL, SIGUNGU, EMD = "total", "sigungu", "emd"
LEVEL_KO = {TOTAL: "전체", SIGUNGU: "시군구", EMD: "읍면동"}
SUPPRESSED = "x"  # how a suppressed cell is shown, in the CSV and on the page
FLAGGED, LISTED, ADDED, CONTACTED = "flagged", "listed", "added", "contacted"
UNREACHABLE = "unreachable"
# The ministry categories that count as contacted (every category but unreachable).
NOT_CONTACTED = (UNREACHABLE,)
REASON_PREFIX = "no_support__"
LABEL_COLUMNS = ("level", "sigungu_code", "sigungu_name", "emd_code", "emd_name")
LABEL_HEADERS = {
    "level": "구분",
    "sigungu_code": "시군구 코드",
    "sigungu_name": "시군구",
    "emd_code": "읍면동 코드",
    "emd_name": "읍면동",
}
FIXED_HEADERS = {
    FLAGGED: "발굴 가구(목록+추가)",
    LISTED: "목록 가구",
    ADDED: "담당자 추가 가구",
    CONTACTED: "접촉 가구",
}


@dataclass(frozen=True)
class MinistryTable:
    """The ministry's table before suppression.

    ``frame``: ``LABEL_COLUMNS`` then the count columns (``columns``, int64), rows in order:
    total, then each 시군구 followed by its 읍면동. ``headers``: Korean header of every column.
    ``row_identities``: (total column, its parts) holding in every row.
    """

    frame: pd.DataFrame
    columns: tuple[str, ...]
    headers: dict[str, str]
    row_identities: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def counts(self) -> np.ndarray:
        return self.frame[list(self.columns)].to_numpy(dtype=np.int64)

    def parents(self) -> np.ndarray:
        """The row index of each row's parent row (-1 for the total row)."""
        level = self.frame["level"].to_numpy()
        sigungu = self.frame["sigungu_code"].to_numpy()
        index = {
            s: i for i, (lv, s) in enumerate(zip(level, sigungu, strict=True)) if lv == SIGUNGU
        }
        return np.array(
            [
                -1 if lv == TOTAL else 0 if lv == SIGUNGU else index[s]
                for lv, s in zip(level, sigungu, strict=True)
            ],
            dtype=np.int64,
        )


def table_columns(catalogue: OutcomeCatalogue) -> tuple[tuple[str, ...], dict[str, str], tuple]:
    """The count columns, their Korean headers and the row identities, from the catalogue."""
    categories = [c.code for c in catalogue.ministry_categories]
    reasons = [f"{REASON_PREFIX}{r.code}" for r in catalogue.no_support_reasons]
    statuses = [NOT_RETURNED, SKIPPED]
    headers = dict(FIXED_HEADERS)
    for entry in catalogue.ministry_categories:
        headers[entry.code] = entry.name_ko
    for entry in catalogue.no_support_reasons:
        headers[f"{REASON_PREFIX}{entry.code}"] = (
            f"{headers.get(NO_SUPPORT, '미지원')}: {entry.name_ko}"
        )
    for code in statuses:
        headers[code] = catalogue.status_name(code, "ko")
    columns = [FLAGGED, LISTED, ADDED, CONTACTED]
    for code in categories:
        columns.append(code)
        if code == NO_SUPPORT:
            columns.extend(reasons)
    if NO_SUPPORT not in categories:
        columns.extend(reasons)
    columns.extend(statuses)
    identities = [
        (FLAGGED, (LISTED, ADDED)),
        (FLAGGED, (*categories, *statuses)),
        (CONTACTED, tuple(c for c in categories if c not in NOT_CONTACTED)),
    ]
    if NO_SUPPORT in categories and reasons:
        identities.append((NO_SUPPORT, tuple(reasons)))
    return tuple(columns), headers, tuple(identities)


def ministry_table(
    cases: pd.DataFrame,
    catalogue: OutcomeCatalogue,
    emd_names: Mapping[str, str],
    sigungu_names: Mapping[str, str],
) -> MinistryTable:
    """The table of a round's cases (``pipeline.cases.round_cases``: one row per listed or added
    household with sigungu_code, emd_code, added, status, ministry, no_support_reason)."""
    columns, headers, identities = table_columns(catalogue)
    categories = [c.code for c in catalogue.ministry_categories]
    ministry = cases["ministry"].astype("string")
    status = cases["status"].astype("string")
    category = ministry.fillna(status)
    unknown = sorted(set(category.dropna()) - set(categories) - {NOT_RETURNED, SKIPPED})
    if category.isna().any() or unknown:
        raise ValueError(f"cases with no ministry category or status: {unknown or ['<NA>']}")
    reason = cases["no_support_reason"].astype("string")
    no_reason = (category == NO_SUPPORT) & reason.isna()
    if no_reason.any():
        raise ValueError(f"{int(no_reason.sum())} no-support cases name no reason")
    added = cases["added"].fillna(False).astype(bool).to_numpy()
    n = len(cases)
    flags: dict[str, np.ndarray] = {
        FLAGGED: np.ones(n, dtype=np.int64),
        LISTED: (~added).astype(np.int64),
        ADDED: added.astype(np.int64),
        CONTACTED: (ministry.notna() & ~ministry.isin(NOT_CONTACTED))
        .to_numpy(dtype=bool)
        .astype(np.int64),
    }
    for code in columns:
        if code in flags:
            continue
        if code.startswith(REASON_PREFIX):
            hit = (category == NO_SUPPORT) & (reason == code.removeprefix(REASON_PREFIX))
        else:
            hit = category == code
        flags[code] = hit.fillna(False).to_numpy(dtype=bool).astype(np.int64)
    per_emd = pd.DataFrame(
        {
            "sigungu_code": cases["sigungu_code"].astype("string").to_numpy(),
            "emd_code": cases["emd_code"].astype("string").to_numpy(),
            **flags,
        }
    )
    emd = per_emd.groupby(["sigungu_code", "emd_code"], sort=True)[list(columns)].sum()
    emd = emd.reset_index()
    sig = emd.groupby("sigungu_code", sort=True)[list(columns)].sum().reset_index()
    rows = [
        {
            "level": TOTAL,
            "sigungu_code": "",
            "sigungu_name": "",
            "emd_code": "",
            "emd_name": "",
            **{c: int(sig[c].sum()) for c in columns},
        }
    ]
    by_sigungu = {str(code): part for code, part in emd.groupby("sigungu_code", sort=True)}
    for s in sig.itertuples(index=False):
        code = str(s.sigungu_code)
        name = sigungu_names.get(code, "")
        rows.append(
            {
                "level": SIGUNGU,
                "sigungu_code": code,
                "sigungu_name": name,
                "emd_code": "",
                "emd_name": "",
                **{c: int(getattr(s, c)) for c in columns},
            }
        )
        for e in by_sigungu[code].itertuples(index=False):
            rows.append(
                {
                    "level": EMD,
                    "sigungu_code": code,
                    "sigungu_name": name,
                    "emd_code": str(e.emd_code),
                    "emd_name": emd_names.get(str(e.emd_code), ""),
                    **{c: int(getattr(e, c)) for c in columns},
                }
            )
    frame = pd.DataFrame(rows, columns=[*LABEL_COLUMNS, *columns])
    frame[list(columns)] = frame[list(columns)].astype("int64")
    return MinistryTable(frame, columns, headers, identities)


# --- the relations (identities) of a table as cell indices -------------------------------------


@dataclass(frozen=True)
class Relations:
    """Every identity of a table as ``total cell = sum of part cells`` (cell = r * ncols + c)."""

    totals: np.ndarray  # the total cell of each relation
    parts: list[np.ndarray]  # the part cells of each relation
    of_cell: list[list[int]]  # the relations each cell belongs to


def relations(table: MinistryTable) -> Relations:
    """The row identities of every row, and the column sums (each parent row = its children)."""
    nrows, ncols = len(table.frame), len(table.columns)
    position = {c: i for i, c in enumerate(table.columns)}
    totals: list[int] = []
    parts: list[np.ndarray] = []
    for r in range(nrows):
        for total, members in table.row_identities:
            totals.append(r * ncols + position[total])
            parts.append(np.array([r * ncols + position[m] for m in members], dtype=np.int64))
    parents = table.parents()
    children: dict[int, list[int]] = {}
    for r, p in enumerate(parents):
        if p >= 0:
            children.setdefault(int(p), []).append(r)
    for p, kids in sorted(children.items()):
        rows = np.array(kids, dtype=np.int64)
        for c in range(ncols):
            totals.append(p * ncols + c)
            parts.append(rows * ncols + c)
    of_cell: list[list[int]] = [[] for _ in range(nrows * ncols)]
    for i, (t, members) in enumerate(zip(totals, parts, strict=True)):
        of_cell[t].append(i)
        for m in members:
            of_cell[int(m)].append(i)
    return Relations(np.array(totals, dtype=np.int64), parts, of_cell)


# --- suppression ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suppressed:
    """A suppressed table: which cells are withheld and how the pattern was verified.

    ``primary`` and ``suppressed`` are boolean arrays of the table's count cells (rows x
    columns); ``intervals`` the feasible [min, max] the verification found for every primary
    cell (NaN where not computed); ``stats``: relations, cells, LPs solved, rounds, seconds.
    """

    table: MinistryTable
    k: int
    primary: np.ndarray
    suppressed: np.ndarray
    intervals: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        """The table as published: counts as text, suppressed cells as ``SUPPRESSED``."""
        frame = self.table.frame.copy()
        counts = self.table.counts
        for j, column in enumerate(self.table.columns):
            frame[column] = [
                SUPPRESSED if self.suppressed[i, j] else f"{int(counts[i, j])}"
                for i in range(len(frame))
            ]
        return frame


def primary_cells(counts: np.ndarray, k: int) -> np.ndarray:
    """Cells of 1 to k-1 households (zeros are published)."""
    return (counts >= 1) & (counts < k)


def _heuristic(
    flat: np.ndarray,
    values: np.ndarray,
    rel: Relations,
    k: int,
    forbidden: np.ndarray,
    start: Sequence[int] | None = None,
) -> None:
    """Complementary suppression in place (``flat``: suppressed cells, flattened): every relation
    holding a suppressed cell holds at least two, and, unless its total is among them, suppressed
    parts of at least ``k`` households. A relation that falls short gets the cheapest cell that
    suffices: the smallest part that brings the parts to ``k`` (else the largest part), the total
    when no part is left. Relations are revisited whenever one of their cells is suppressed."""
    pending = list(range(len(rel.totals))) if start is None else sorted(set(start))
    queued = np.zeros(len(rel.totals), dtype=bool)
    queued[pending] = True
    pending.reverse()
    while pending:
        i = pending.pop()
        queued[i] = False
        total = int(rel.totals[i])
        members = rel.parts[i]
        hidden = flat[members]
        count = int(hidden.sum()) + int(flat[total])
        if count == 0:
            continue
        if flat[total] and count >= 2:
            continue
        mass = int(values[members][hidden].sum())
        if count >= 2 and mass >= k:
            continue
        open_parts = members[~hidden & ~forbidden[members]]
        need = k - mass
        choice = -1
        if len(open_parts):
            part_values = values[open_parts]
            enough = part_values >= max(need, 0)
            if enough.any():
                candidates = open_parts[enough]
                choice = int(candidates[np.argmin(values[candidates])])
            else:
                choice = int(open_parts[np.argmax(part_values)])
        elif not flat[total] and not forbidden[total]:
            choice = total
        if choice < 0:
            continue  # nothing left to add here: the verification decides
        flat[choice] = True
        for j in rel.of_cell[choice]:
            if not queued[j]:
                queued[j] = True
                pending.append(j)
        if not queued[i]:
            queued[i] = True
            pending.append(i)


def _components(flat: np.ndarray, rel: Relations) -> list[np.ndarray]:
    """The suppressed cells grouped into independent linear programmes (cells linked by a
    relation that holds both)."""
    cells = np.flatnonzero(flat)
    parent = {int(c): int(c) for c in cells}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for total, members in zip(rel.totals, rel.parts, strict=True):
        hidden = [int(m) for m in members if flat[m]]
        if flat[total]:
            hidden.append(int(total))
        for other in hidden[1:]:
            a, b = find(hidden[0]), find(other)
            if a != b:
                parent[a] = b
    groups: dict[int, list[int]] = {}
    for c in cells:
        groups.setdefault(find(int(c)), []).append(int(c))
    return [np.array(sorted(g), dtype=np.int64) for g in groups.values()]


def _component_programme(
    cells: np.ndarray, flat: np.ndarray, values: np.ndarray, rel: Relations
) -> tuple[Any, np.ndarray]:
    """``A x = b`` of one component: every relation holding one of its cells, the published
    cells moved to the right-hand side (x: the component's cells, in order)."""
    from scipy.sparse import csr_matrix

    local = {int(c): i for i, c in enumerate(cells)}
    seen: set[int] = set()
    data, rows, cols, b = [], [], [], []
    for c in cells:
        for r in rel.of_cell[int(c)]:
            if r in seen:
                continue
            seen.add(r)
            row = len(b)
            rhs = 0.0
            for cell, coef in [(int(rel.totals[r]), -1.0), *((int(m), 1.0) for m in rel.parts[r])]:
                if flat[cell]:
                    data.append(coef)
                    rows.append(row)
                    cols.append(local[cell])
                else:
                    rhs -= coef * float(values[cell])
            b.append(rhs)
    matrix = csr_matrix((data, (rows, cols)), shape=(len(b), len(cells)))
    return matrix, np.array(b, dtype=np.float64)


class _Programme:
    """One linear programme ``A x = b, x >= 0`` solved for one objective after another.

    HiGHS through SciPy: its ``Highs`` object when SciPy exposes it (``scipy.optimize._highspy``,
    re-solved from the last optimal basis: a new objective costs a few simplex iterations),
    else ``scipy.optimize.linprog(method="highs")`` from scratch each time.
    """

    def __init__(self, matrix: Any, rhs: np.ndarray) -> None:
        self.matrix = matrix.tocsc()
        self.rhs = rhs
        self.n = matrix.shape[1]
        self.highs: Any = None
        self.status: Any = None
        self.cost_at: np.ndarray = np.zeros(0, dtype=np.int32)
        try:
            from scipy.optimize._highspy import _core as highs
        except ImportError:  # another SciPy: linprog below
            return
        lp = highs.HighsLp()
        lp.num_col_ = self.n
        lp.num_row_ = len(rhs)
        lp.col_cost_ = np.zeros(self.n)
        lp.col_lower_ = np.zeros(self.n)
        lp.col_upper_ = np.full(self.n, highs.kHighsInf)
        lp.row_lower_ = rhs
        lp.row_upper_ = rhs
        lp.a_matrix_.format_ = highs.MatrixFormat.kColwise
        lp.a_matrix_.start_ = self.matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = self.matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = self.matrix.data.astype(np.float64)
        solver = highs._Highs()
        solver.setOptionValue("output_flag", False)
        solver.setOptionValue("presolve", "off")  # re-solves start from the last basis
        solver.passModel(lp)
        self.highs = solver
        self.status = highs.HighsModelStatus

    def solve(self, objective: np.ndarray) -> np.ndarray | None:
        """A solution minimising ``objective``; None when it is unbounded below."""
        if self.highs is None:
            from scipy.optimize import linprog

            result = linprog(
                objective, A_eq=self.matrix, b_eq=self.rhs, bounds=(0, None), method="highs"
            )
            if result.status == 3:
                return None
            if result.status != 0:
                raise RuntimeError(f"the suppression's linear programme failed: {result.message}")
            return np.asarray(result.x)
        at = np.flatnonzero(objective).astype(np.int32)
        clear = np.setdiff1d(self.cost_at, at).astype(np.int32)
        if len(clear):
            self.highs.changeColsCost(len(clear), clear, np.zeros(len(clear)))
        if len(at):
            self.highs.changeColsCost(len(at), at, objective[at].astype(np.float64))
        self.cost_at = at
        self.highs.run()
        status = self.highs.getModelStatus()
        if status in (self.status.kUnbounded, self.status.kUnboundedOrInfeasible):
            return None
        if status != self.status.kOptimal:
            raise RuntimeError(
                "the suppression's linear programme failed: "
                f"{self.highs.modelStatusToString(status)}"
            )
        return np.asarray(self.highs.getSolution().col_value)


TOLERANCE = 1e-6
PARTNERS = 3  # 시군구 tried as partners of one whose cells the block alone cannot protect


def audit_component(
    cells: np.ndarray,
    flat: np.ndarray,
    values: np.ndarray,
    rel: Relations,
    check: np.ndarray,
    k: int,
    *,
    exact: bool = False,
) -> tuple[dict[int, tuple[float, float]], int]:
    """The feasible interval of each cell of ``check`` (cells of the component), and the number
    of linear programmes solved. Unless ``exact``, an interval is only computed as far as needed
    to show a width of ``k`` (then it is a sub-interval of the feasible one)."""
    matrix, rhs = _component_programme(cells, flat, values, rel)
    programme = _Programme(matrix, rhs)
    index = {int(c): i for i, c in enumerate(cells)}
    targets = np.array([index[int(c)] for c in check], dtype=np.int64)
    truth = values[cells].astype(np.float64)
    low = truth.copy()
    high = truth.copy()
    solved = 0

    def seen(x: np.ndarray | None) -> None:
        if x is not None:
            np.minimum(low, x, out=low)
            np.maximum(high, x, out=high)

    def wide(i: int) -> bool:
        return high[i] - low[i] >= k - TOLERANCE

    if not exact and len(targets):
        for sign in (1.0, -1.0):  # all primary cells up, then all down
            objective = np.zeros(len(cells))
            objective[targets] = -sign
            seen(programme.solve(objective))
            solved += 1
    for i in targets:
        if not exact and wide(i):
            continue
        objective = np.zeros(len(cells))
        objective[i] = -1.0
        x = programme.solve(objective)
        solved += 1
        if x is None:
            high[i] = np.inf
        else:
            seen(x)
        if not exact and wide(i):
            continue
        objective[i] = 1.0
        seen(programme.solve(objective))
        solved += 1
    out = {int(cells[i]): (float(low[i]), float(high[i])) for i in targets}
    return out, solved


def suppress(
    table: MinistryTable,
    k: int,
    *,
    public: np.ndarray | None = None,
    max_rounds: int = 50,
    exact_limit: int = 3000,
) -> Suppressed:
    """Primary and complementary suppression of ``table`` for threshold ``k``, verified by
    linear programming (see the module's docstring).

    ``public``: cells (rows x columns) published elsewhere, never chosen as complementary cells
    (by default the ``listed`` cells of ``k`` or more households: the overview page shows the
    listed households per 읍면동).
    """
    started = time.perf_counter()
    counts = table.counts
    nrows, ncols = counts.shape
    values = counts.reshape(-1)
    primary = primary_cells(counts, k)
    if public is None:
        public = np.zeros_like(primary)
        if LISTED in table.columns:
            j = table.columns.index(LISTED)
            public[:, j] = counts[:, j] >= k
    forbidden = (public & ~primary).reshape(-1)
    rel = relations(table)
    flat = primary.reshape(-1).copy()
    _heuristic(flat, values, rel, k, forbidden)
    after_heuristic = int(flat.sum())
    primary_flat = primary.reshape(-1)
    intervals = np.full((nrows * ncols, 2), np.nan)
    verified: dict[tuple, dict[int, tuple[float, float]]] = {}
    counter = {"solved": 0, "programmes": 0, "largest": 0}
    blocks = _blocks(table, ncols)
    level = table.frame["level"].to_numpy()
    top = np.zeros(nrows * ncols, dtype=bool)
    for r in np.flatnonzero(level != EMD):
        top[r * ncols : (r + 1) * ncols] = True
    # the 시군구 row of each block, the block of each row (-1: the total row), and the rows a
    # pair of blocks may move besides their 읍면동 (its 시군구 row and the total row)
    sigungu_rows = np.flatnonzero(level == SIGUNGU)
    parents = table.parents()
    block_of_row = np.full(nrows, -1, dtype=np.int64)
    block_of_row[sigungu_rows] = np.arange(len(sigungu_rows))
    emd_rows = np.flatnonzero(level == EMD)
    block_of_row[emd_rows] = block_of_row[parents[emd_rows]]
    top_rows = []
    for r in sigungu_rows:
        mask = np.zeros(nrows * ncols, dtype=bool)
        mask[r * ncols : (r + 1) * ncols] = True
        mask[0:ncols] = True
        top_rows.append(mask)
    rounds = 0

    def cached(key: tuple, cells: np.ndarray, variable: np.ndarray, check: np.ndarray) -> dict:
        if key not in verified:
            found, n = audit_component(cells, variable, values, rel, check, k)
            counter["solved"] += n
            counter["programmes"] += 1
            counter["largest"] = max(counter["largest"], len(cells))
            verified[key] = found
        return verified[key]

    while True:
        rounds += 1
        narrow: list[int] = []
        # 1. each 시군구's 읍면동 rows with the 시군구 row taken as known (a restriction of the
        # whole programme: an interval found here is inside the true one, never wider)
        for block in blocks:
            variable = flat & block
            cells = np.flatnonzero(variable)
            check = cells[primary_flat[cells]]
            if not len(check):
                continue
            found = cached(("block", *cells.tolist()), cells, variable, check)
            for cell, (lo, hi) in found.items():
                intervals[cell] = (lo, hi)
                if hi - lo < k - TOLERANCE:
                    narrow.append(cell)
        # 2. what that cannot show, and the 시군구 rows' cells: two 시군구 at a time (both
        # blocks, their 시군구 rows and the total row may move, the rest stays as it is: again a
        # restriction), the partners sharing the most suppressed 시군구 cells first
        narrow.extend(np.flatnonzero(flat & primary_flat & top).tolist())
        grid = flat.reshape(nrows, ncols)
        shared = grid[sigungu_rows] * counts[sigungu_rows]
        best: dict[int, tuple[float, float]] = {}
        by_block: dict[int, list[int]] = {}
        still: list[int] = []
        for cell in narrow:
            owner = int(block_of_row[cell // ncols])
            (still if owner < 0 else by_block.setdefault(owner, [])).append(cell)
        for owner, owned in sorted(by_block.items()):
            remaining = sorted(owned)
            score = (shared * grid[sigungu_rows[owner]]).sum(axis=1)
            score[owner] = 0
            for partner in np.argsort(-score, kind="stable")[:PARTNERS]:
                if score[partner] <= 0:
                    break
                variable = flat & (
                    blocks[owner] | blocks[partner] | top_rows[owner] | top_rows[partner]
                )
                cells = np.flatnonzero(variable)
                check = np.array(remaining, dtype=np.int64)
                key = ("pair", *cells.tolist(), -1, *check.tolist())
                for cell, (lo, hi) in cached(key, cells, variable, check).items():
                    was = best.get(cell, (np.inf, -np.inf))
                    best[cell] = (min(lo, was[0]), max(hi, was[1]))
                remaining = [c for c in remaining if best[c][1] - best[c][0] < k - TOLERANCE]
                if not remaining:
                    break
            still.extend(remaining)
        # 3. the rest: the exact programme of its component (every identity, every suppressed
        # cell linked to it) when that is small enough; otherwise the cell counts as unprotected
        failing: list[int] = []
        if still:
            wanted = np.zeros_like(flat)
            wanted[still] = True
            for cells in _components(flat, rel):
                check = cells[wanted[cells]]
                if not len(check):
                    continue
                if len(cells) > exact_limit:
                    failing.extend(check.tolist())
                    continue
                key = ("exact", *cells.tolist(), -1, *check.tolist())
                for cell, (lo, hi) in cached(key, cells, flat, check).items():
                    best[cell] = (lo, hi)
                    if hi - lo < k - TOLERANCE:
                        failing.append(cell)
        for cell, interval in best.items():
            intervals[cell] = interval
        if not failing:
            break
        if rounds >= max_rounds:
            raise RuntimeError(f"suppression: {len(failing)} cells still unprotected")
        touched: list[int] = []
        for cell in failing:
            choices = _widening_cells(cell, flat, values, rel, forbidden)
            if not choices:
                raise RuntimeError(f"suppression: no cell left to protect cell {cell}")
            for choice in choices:
                flat[choice] = True
                touched.extend(rel.of_cell[choice])
        _heuristic(flat, values, rel, k, forbidden, start=touched)
    suppressed = flat.reshape(nrows, ncols)
    return Suppressed(
        table=table,
        k=k,
        primary=primary,
        suppressed=suppressed,
        intervals=intervals.reshape(nrows, ncols, 2),
        stats={
            "cells": int(nrows * ncols),
            "primary": int(primary.sum()),
            "after_heuristic": after_heuristic,
            "suppressed": int(suppressed.sum()),
            "relations": len(rel.totals),
            "programmes": counter["programmes"],
            "largest_programme": counter["largest"],
            "linear_programmes": counter["solved"],
            "rounds": rounds,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def _blocks(table: MinistryTable, ncols: int) -> list[np.ndarray]:
    """The cells of each 시군구's 읍면동 rows (a mask each)."""
    frame = table.frame
    level = frame["level"].to_numpy()
    sigungu = frame["sigungu_code"].to_numpy()
    rows: dict[str, list[int]] = {}
    for r, (lv, code) in enumerate(zip(level, sigungu, strict=True)):
        if lv == EMD:
            rows.setdefault(str(code), []).append(r)
    out = []
    for code in sorted(rows):
        mask = np.zeros(len(frame) * ncols, dtype=bool)
        for r in rows[code]:
            mask[r * ncols : (r + 1) * ncols] = True
        out.append(mask)
    return out


def _widening_cells(
    cell: int, flat: np.ndarray, values: np.ndarray, rel: Relations, forbidden: np.ndarray
) -> list[int]:
    """The cells to suppress next for a cell whose interval is too narrow: in each of its
    relations, the largest published count (a part before the total); when none of its relations
    has one left, the largest in a relation of a suppressed neighbour (breadth first)."""
    frontier = [cell]
    visited: set[int] = set()
    while frontier:
        chosen: list[int] = []
        following: list[int] = []
        for c in frontier:
            for r in rel.of_cell[c]:
                if r in visited:
                    continue
                visited.add(r)
                total = int(rel.totals[r])
                best, best_score = None, -1
                for m in [*(int(m) for m in rel.parts[r]), total]:
                    if flat[m]:
                        following.append(m)
                    elif not forbidden[m]:
                        score = int(values[m]) * 2 + (m != total)
                        if score > best_score:
                            best, best_score = m, score
                if best is not None:
                    chosen.append(best)
        if chosen:
            return chosen
        frontier = following
    return []


def audit(suppressed: Suppressed, cells: np.ndarray | None = None) -> np.ndarray:
    """The exact feasible [min, max] of each suppressed cell (rows x columns x 2, NaN where
    published): what a reader of the published table who knows the identities can recover."""
    table = suppressed.table
    counts = table.counts
    nrows, ncols = counts.shape
    values = counts.reshape(-1)
    rel = relations(table)
    flat = suppressed.suppressed.reshape(-1)
    wanted = flat if cells is None else (cells.reshape(-1) & flat)
    out = np.full((nrows * ncols, 2), np.nan)
    for component in _components(flat, rel):
        check = component[wanted[component]]
        if not len(check):
            continue
        found, _ = audit_component(component, flat, values, rel, check, suppressed.k, exact=True)
        for cell, interval in found.items():
            out[cell] = interval
    return out.reshape(nrows, ncols, 2)


# --- publishing -------------------------------------------------------------------------------


def footnote(k: int) -> str:
    """The line under the table that says what ``x`` means."""
    return (
        f"주: {SUPPRESSED} = 비공개. {k}가구 미만(1~{k - 1}가구)인 칸과, 그 값을 합계에서 빼서 "
        f"알아낼 수 없도록 함께 가린 칸입니다. 0은 그대로 표시합니다. "
        f"발굴 가구 = 목록 가구 + 담당자 추가 가구 = 공공 + 민간 + 미지원 + 비대상 + 연락 불가 + "
        f"처리 중 + 미반환 + 제외; 접촉 가구 = 공공 + 민간 + 미지원 + 비대상 + 처리 중."
    )


def ministry_csv(suppressed: Suppressed, round_label: str) -> str:
    """The published table as CSV text (with a BOM: Excel reads the Korean), Korean headers,
    CRLF line ends, suppressed cells as ``x``, a footnote line at the end."""
    table = suppressed.table
    shown = suppressed.display()
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [
            "회차",
            *(LABEL_HEADERS[c] for c in LABEL_COLUMNS),
            *(table.headers[c] for c in table.columns),
        ]
    )
    for row in shown.itertuples(index=False):
        record = row._asdict()
        writer.writerow(
            [
                round_label,
                LEVEL_KO[record["level"]],
                *(record[c] for c in LABEL_COLUMNS[1:]),
                *(record[c] for c in table.columns),
            ]
        )
    writer.writerow([footnote(suppressed.k)])
    return buffer.getvalue()


def publish(
    cases: pd.DataFrame, catalogue: OutcomeCatalogue, names: Mapping[str, str], k: int
) -> Suppressed:
    """The round's table (:func:`ministry_table`, names of 읍면동 and 시군구 from ``names``),
    suppressed for threshold ``k`` (:func:`suppress`)."""
    return suppress(ministry_table(cases, catalogue, names, names), k)


def summary_facts(suppressed: Suppressed) -> dict[str, Any]:
    """What the report's record keeps of the suppression (no timings: the record is
    deterministic)."""
    return {
        "k": suppressed.k,
        "cells": int(suppressed.suppressed.size),
        "primary": int(suppressed.primary.sum()),
        "suppressed": int(suppressed.suppressed.sum()),
    }


def page_rows(suppressed: Suppressed, file: str = "") -> dict[str, Any]:
    """What the follow-up page's template shows: the headers, the total and 시군구 rows, and
    the 읍면동 rows of each 시군구."""
    table = suppressed.table
    shown = suppressed.display()
    headers = [table.headers[c] for c in table.columns]
    top: list[dict[str, Any]] = []
    emd: dict[str, list[dict[str, Any]]] = {}
    for record in shown.to_dict("records"):
        row = {
            "level": record["level"],
            "sigungu_code": record["sigungu_code"],
            "name": LEVEL_KO[TOTAL]
            if record["level"] == TOTAL
            else record["sigungu_name"] or record["sigungu_code"]
            if record["level"] == SIGUNGU
            else record["emd_name"] or record["emd_code"],
            "code": record["emd_code"] or record["sigungu_code"],
            "cells": [record[c] for c in table.columns],
        }
        if record["level"] == EMD:
            emd.setdefault(record["sigungu_code"], []).append(row)
        else:
            top.append(row)
    for row in top:
        row["emd_rows"] = emd.get(row["sigungu_code"], []) if row["level"] == SIGUNGU else []
    return {
        "headers": headers,
        "rows": top,
        "footnote": footnote(suppressed.k),
        "suppressed": suppressed.stats.get("suppressed", int(suppressed.suppressed.sum())),
        "primary": suppressed.stats.get("primary", int(suppressed.primary.sum())),
        "k": suppressed.k,
        "file": file,
    }

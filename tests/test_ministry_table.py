"""The ministry's table (``pipeline.report.ministry``): counts, identities, suppression that
cannot be undone by subtraction, the CSV and the follow-up page.

The adversary here is written apart from the module: it reads the published CSV as anyone
would, writes down the table's identities from its headers and rows, and asks a linear
programme (SciPy's HiGHS) for the smallest and largest value of every withheld cell.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import copy_outputs

from pipeline.report import ministry

K = 5

# (ministry category, no-support reason, status) of a case
PUBLIC = ("public_support", None, "linked")
PRIVATE = ("private_support", None, "linked")
NOT_ELIGIBLE = ("not_eligible", None, "visited")
UNREACHABLE = ("unreachable", None, "not_reached")
IN_PROGRESS = ("in_progress", None, "in_progress")
DECLINED = ("no_support", "declined", "visited")
ALREADY = ("no_support", "already_supported", "visited")
CALL_DECLINED = ("no_support", "call_declined", "visited")
NOT_RETURNED = (None, None, "not_returned")
SKIPPED = (None, None, "skipped")


def _cases(spec: dict[tuple[str, str], list[tuple[tuple, int]]], added: int = 0) -> pd.DataFrame:
    """Cases of round_cases' shape: ``{(시군구, 읍면동): [(kind, households), ...]}``; the first
    ``added`` cases of each 읍면동 are added by caseworkers."""
    rows = []
    for (sigungu, emd), kinds in spec.items():
        i = 0
        for (category, reason, status), n in kinds:
            for _ in range(n):
                rows.append(
                    {
                        "household_key": f"{emd}-{i:04d}",
                        "sigungu_code": sigungu,
                        "emd_code": emd,
                        "tier": "visit",
                        "added": i < added,
                        "outcome_code": None,
                        "call_result": None,
                        "override_code": None,
                        "status": status,
                        "ministry": category,
                        "no_support_reason": reason,
                        "pending": False,
                        "overdue": False,
                    }
                )
                i += 1
    return pd.DataFrame(rows)


def _national_like(seed: int, sigungu: int = 3, emd: int = 4, per_emd: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = [PUBLIC, PRIVATE, NOT_ELIGIBLE, UNREACHABLE, IN_PROGRESS, DECLINED, ALREADY]
    kinds += [CALL_DECLINED, NOT_RETURNED, SKIPPED]
    p = np.array([0.15, 0.35, 0.2, 0.05, 0.05, 0.02, 0.03, 0.01, 0.1, 0.04])
    spec = {}
    for s in range(sigungu):
        for e in range(emd):
            n = int(rng.poisson(per_emd))
            counts = rng.multinomial(n, p / p.sum())
            spec[(f"1{s}", f"1{s}{e:02d}")] = list(zip(kinds, counts.tolist(), strict=True))
    return _cases(spec, added=1)


# --- the adversary: the published CSV, its identities, a linear programme ---------------------


def _read_published(text: str) -> tuple[list[str], list[list[str]]]:
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    header, body = rows[0], rows[1:]
    assert body[-1][0].startswith("주:"), "the footnote line closes the file"
    return header, body[:-1]


def _identities(header: list[str]) -> list[tuple[int, list[int]]]:
    """The row identities, read from the Korean headers (total column, part columns)."""
    at = {h: i for i, h in enumerate(header)}
    categories = [
        "공공 지원 연계",
        "민간 지원 연계",
        "미지원",
        "비대상(지원 불필요)",
        "연락 불가",
        "처리 중",
    ]
    reasons = [h for h in header if h.startswith("미지원: ")]
    return [
        (at["발굴 가구(목록+추가)"], [at["목록 가구"], at["담당자 추가 가구"]]),
        (at["발굴 가구(목록+추가)"], [at[c] for c in [*categories, "미반환", "제외(담당자 판단)"]]),
        (at["접촉 가구"], [at[c] for c in categories if c != "연락 불가"]),
        (at["미지원"], [at[r] for r in reasons]),
    ]


def adversary(text: str, withheld=("x",)) -> dict[tuple[int, int], tuple[float, float]]:
    """Every withheld cell's smallest and largest value over all non-negative tables that agree
    with the published cells and the identities: {(row, column): (min, max)}."""
    from scipy.optimize import linprog
    from scipy.sparse import lil_matrix

    header, body = _read_published(text)
    first = header.index("발굴 가구(목록+추가)")
    columns = range(first, len(header))
    unknown: dict[tuple[int, int], int] = {}
    for r, row in enumerate(body):
        for c in columns:
            if row[c] in withheld:
                unknown[(r, c)] = len(unknown)
    relations: list[list[tuple[int, int, float]]] = []  # (row, column, coefficient)
    for r in range(len(body)):
        for total, parts in _identities(header):
            relations.append([(r, total, -1.0), *((r, p, 1.0) for p in parts)])
    level, sigungu = header.index("구분"), header.index("시군구 코드")
    parent_rows: dict[str, int] = {}
    for r, row in enumerate(body):
        if row[level] == "시군구":
            parent_rows[row[sigungu]] = r
    children: dict[int, list[int]] = {}
    for r, row in enumerate(body):
        if row[level] == "시군구":
            children.setdefault(0, []).append(r)
        elif row[level] == "읍면동":
            children.setdefault(parent_rows[row[sigungu]], []).append(r)
    for parent, kids in children.items():
        for c in columns:
            relations.append([(parent, c, -1.0), *((kid, c, 1.0) for kid in kids)])
    matrix = lil_matrix((len(relations), max(len(unknown), 1)))
    rhs = np.zeros(len(relations))
    for i, relation in enumerate(relations):
        for r, c, coef in relation:
            if (r, c) in unknown:
                matrix[i, unknown[(r, c)]] += coef
            else:
                rhs[i] -= coef * float(body[r][c].replace(",", ""))
    matrix = matrix.tocsr()
    out = {}
    for cell, j in unknown.items():
        bounds = []
        for sign in (1.0, -1.0):
            objective = np.zeros(len(unknown))
            objective[j] = sign
            result = linprog(objective, A_eq=matrix, b_eq=rhs, bounds=(0, None))
            assert result.status in (0, 3), result.message
            bounds.append(np.inf if result.status == 3 else sign * result.fun)
        out[cell] = (bounds[0], bounds[1])
    return out


def _old_style_csv(table: ministry.MinistryTable) -> str:
    """Today's masking, applied to the same table: counts under K shown as "<5", nothing else."""
    masked = ministry.Suppressed(
        table=table,
        k=K,
        primary=ministry.primary_cells(table.counts, K),
        suppressed=ministry.primary_cells(table.counts, K),
        intervals=np.zeros((*table.counts.shape, 2)),
    )
    header, body = _read_published(ministry.ministry_csv(masked, "2026-10"))
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in body:
        writer.writerow([row[:6] + ["<5" if v == "x" else v for v in row[6:]]][0])
    writer.writerow([ministry.footnote(K)])
    return buffer.getvalue()


# --- the table --------------------------------------------------------------------------------


def test_counts_follow_the_cases_and_every_identity_holds(outcome_catalogue):
    cases = _national_like(1)
    table = ministry.ministry_table(cases, outcome_catalogue, {"1000": "가동"}, {"10": "가구"})
    frame = table.frame
    assert list(frame["level"][:2]) == ["total", "sigungu"]
    total = frame.iloc[0]
    assert total["flagged"] == len(cases)
    assert total["added"] == int(cases["added"].sum())
    assert total["public_support"] == int((cases["ministry"] == "public_support").sum())
    assert total["no_support__call_declined"] == int(
        (cases["no_support_reason"] == "call_declined").sum()
    )
    assert total["skipped"] == int((cases["status"] == "skipped").sum())
    for name, parts in table.row_identities:
        assert (frame[name] == frame[list(parts)].sum(axis=1)).all(), name
    counts = frame[list(table.columns)]
    sigungu = frame["level"] == "sigungu"
    assert (counts[sigungu].sum() == counts.iloc[0]).all()
    for code, part in frame[frame["level"] == "emd"].groupby("sigungu_code"):
        row = counts[(frame["level"] == "sigungu") & (frame["sigungu_code"] == code)].iloc[0]
        assert (counts.loc[part.index].sum() == row).all()
    assert frame.loc[frame["emd_code"] == "1000", "emd_name"].iloc[0] == "가동"
    assert table.headers["public_support"] == "공공 지원 연계"
    assert table.headers["no_support__declined"] == "미지원: 본인 거부"
    assert table.headers["not_returned"] == "미반환"


def test_a_case_with_no_category_is_refused(outcome_catalogue):
    cases = _cases({("10", "1000"): [(PUBLIC, 3)]})
    cases.loc[0, "status"] = "visited"
    cases.loc[0, "ministry"] = None
    with pytest.raises(ValueError, match="no ministry category"):
        ministry.ministry_table(cases, outcome_catalogue, {}, {})


# --- suppression --------------------------------------------------------------------------------


def test_primary_suppression_alone_is_undone_by_subtraction_and_secondary_fixes_it(
    outcome_catalogue,
):
    # 읍면동 1000: 10 public, 2 private, 8 not eligible; the row total is 20 and published.
    # With only the 2 withheld, 20 - 10 - 8 gives it back.
    cases = _cases(
        {
            ("10", "1000"): [(PUBLIC, 10), (PRIVATE, 2), (NOT_ELIGIBLE, 8)],
            ("10", "1001"): [(PUBLIC, 12), (PRIVATE, 9), (NOT_ELIGIBLE, 7)],
            ("10", "1002"): [(PUBLIC, 8), (PRIVATE, 11), (NOT_ELIGIBLE, 6)],
        }
    )
    table = ministry.ministry_table(cases, outcome_catalogue, {}, {})
    row = int(np.flatnonzero(table.frame["emd_code"] == "1000")[0])
    column = table.columns.index("private_support")
    ranges = adversary(_old_style_csv(table), withheld=("<5",))
    first = 6  # 회차 + five label columns
    low, high = ranges[(row, first + column)]
    assert low == pytest.approx(2) and high == pytest.approx(2), "primary alone: recovered"

    published = ministry.suppress(table, K)
    assert published.suppressed[row, column]
    assert published.suppressed.sum() > published.primary.sum()
    ranges = adversary(ministry.ministry_csv(published, "2026-10"))
    low, high = ranges[(row, first + column)]
    assert high - low >= K


@pytest.mark.parametrize("seed", [1, 2])
def test_no_withheld_cell_can_be_narrowed_by_the_adversary(outcome_catalogue, seed):
    table = ministry.ministry_table(_national_like(seed), outcome_catalogue, {}, {})
    published = ministry.suppress(table, K)
    text = ministry.ministry_csv(published, "2026-10")
    ranges = adversary(text)
    first = 6
    primary = {(r, first + c) for r, c in zip(*np.nonzero(published.primary), strict=True)}
    assert primary and primary <= set(ranges)
    for cell in primary:
        low, high = ranges[cell]
        assert high - low >= K - 1e-6, (cell, low, high)
    # zeros are published, every count of K or more that is withheld is a complementary cell
    counts = table.counts
    assert not (published.suppressed & (counts == 0) & published.primary).any()
    # the module's own exact audit agrees with the adversary
    exact = ministry.audit(published)
    for r, c in zip(*np.nonzero(published.primary), strict=True):
        assert exact[r, c, 0] == pytest.approx(ranges[(r, first + c)][0], abs=1e-6)
        assert exact[r, c, 1] == pytest.approx(ranges[(r, first + c)][1], abs=1e-6)


def test_the_adversary_check_fails_on_the_old_masking(outcome_catalogue):
    table = ministry.ministry_table(_national_like(1), outcome_catalogue, {}, {})
    ranges = adversary(_old_style_csv(table), withheld=("<5",))
    narrow = [cell for cell, (low, high) in ranges.items() if high - low < K]
    exact = [cell for cell, (low, high) in ranges.items() if high - low < 1e-6]
    assert narrow and exact, "'<5' alone leaves cells recoverable by subtraction"


def test_the_csv_has_korean_headers_x_and_a_footnote(outcome_catalogue):
    table = ministry.ministry_table(_national_like(2), outcome_catalogue, {"1000": "가동"}, {})
    published = ministry.suppress(table, K)
    text = ministry.ministry_csv(published, "2026-10")
    header, body = _read_published(text)
    assert header[:6] == ["회차", "구분", "시군구 코드", "시군구", "읍면동 코드", "읍면동"]
    assert "발굴 가구(목록+추가)" in header and "공공 지원 연계" in header
    assert "미지원: 상담 전화 거부" in header and "제외(담당자 판단)" in header
    assert body[0][1] == "전체" and body[1][1] == "시군구"
    cells = [v for row in body for v in row[6:]]
    assert "x" in cells and "<5" not in cells
    assert all(v == "x" or v.isdigit() for v in cells)
    assert "\r\n" in text


# --- the report ------------------------------------------------------------------------------


def test_the_followup_page_and_the_round_csv_hold_the_table(scored_sample, tmp_path):
    from test_report import _run, _write_outcomes

    from pipeline.datasets.rounds import REPORT_MINISTRY

    copy = copy_outputs(scored_sample, tmp_path)
    scores = pd.read_parquet(copy.round_dir / "scores.parquet")
    _write_outcomes(copy.config, scores, copy.as_of)
    code, output = _run(copy.config_file, "report", "--as-of", copy.as_of)
    assert code == 0, output
    report = copy.round_dir / "report"
    page = (report / "followup.html").read_text(encoding="utf-8")
    assert 'id="ministry-table"' in page and "발굴 가구(목록+추가)" in page
    assert 'id="ministry-footnote"' in page
    text = (report / REPORT_MINISTRY).read_bytes().decode("utf-8")
    header, body = _read_published(text)
    listed = int(scores["tier"].isin(["visit", "phone"]).sum())
    flagged = body[0][header.index("발굴 가구(목록+추가)")]
    assert flagged == "x" or int(flagged) >= listed
    record = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert REPORT_MINISTRY in record["files_sha256"]
    assert record["followup"]["ministry"]["k"] == copy.config.report.small_count
    ranges = adversary(text)
    primary = [(r, c) for r, row in enumerate(body) for c in range(6, len(header)) if row[c] == "x"]
    assert primary == sorted(ranges)
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)

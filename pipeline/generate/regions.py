"""Korean administrative regions: the 17 시도 and synthetic 시군구 and 읍면동 under them.

Codes follow the 10-digit administrative code format: ``SS GGG DDD 00`` (시도, 시군구, 읍면동).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# (code, name, short name, households in millions, is a metropolitan city or special city)
SIDO: tuple[tuple[str, str, str, float, bool], ...] = (
    ("11", "서울특별시", "서울", 4.46, True),
    ("26", "부산광역시", "부산", 1.56, True),
    ("27", "대구광역시", "대구", 1.06, True),
    ("28", "인천광역시", "인천", 1.30, True),
    ("29", "광주광역시", "광주", 0.63, True),
    ("30", "대전광역시", "대전", 0.65, True),
    ("31", "울산광역시", "울산", 0.47, True),
    ("36", "세종특별자치시", "세종", 0.16, False),
    ("41", "경기도", "경기", 5.86, False),
    ("43", "충청북도", "충북", 0.74, False),
    ("44", "충청남도", "충남", 0.95, False),
    ("46", "전라남도", "전남", 0.82, False),
    ("47", "경상북도", "경북", 1.22, False),
    ("48", "경상남도", "경남", 1.46, False),
    ("50", "제주특별자치도", "제주", 0.30, False),
    ("51", "강원특별자치도", "강원", 0.72, False),
    ("52", "전북특별자치도", "전북", 0.80, False),
)

_FIRST = "한새푸솔다누가마바사아자하은금청백동서남북중신고명화평안영송"
_SECOND = "빛솔름림온결내뫼들봄별길샘울담달꽃잎강산"


@dataclass(frozen=True)
class EmdSpec:
    """One 읍면동 and its synthetic parameters."""

    code: str
    name: str
    emd_type: str  # 동, 읍 or 면
    households: int
    effect: float


@dataclass(frozen=True)
class SigunguSpec:
    """One 시군구 partition: its place in the hierarchy, its 읍면동 and its area effect."""

    ordinal: int
    code: str
    name: str
    sido_code: str
    sido_name: str
    effect: float
    emds: tuple[EmdSpec, ...]

    @property
    def households(self) -> int:
        return sum(e.households for e in self.emds)


def _syllable_names(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = _FIRST[rng.integers(len(_FIRST))] + _SECOND[rng.integers(len(_SECOND))]
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _split_total(rng: np.random.Generator, total: int, parts: int, sigma: float) -> np.ndarray:
    """Split ``total`` into ``parts`` positive integers with lognormal weights."""
    weights = rng.lognormal(0.0, sigma, size=parts)
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(np.int64)
    remainder = total - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:remainder]] += 1
    return counts


def build_regions(
    seed: int, households: int, sigungu_count: int, emd_per_sigungu: tuple[int, int]
) -> list[SigunguSpec]:
    """Deterministically lay out 시군구 and 읍면동 over the 17 시도, with household counts."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    weights = np.array([s[3] for s in SIDO])
    sido_index = np.sort(rng.choice(len(SIDO), size=sigungu_count, p=weights / weights.sum()))
    sigungu_households = _split_total(rng, households, sigungu_count, 0.35)
    taken: set[str] = set()
    per_sido_count: dict[str, int] = {}
    specs: list[SigunguSpec] = []
    for ordinal, (si, hh) in enumerate(zip(sido_index, sigungu_households, strict=True)):
        sido_code, sido_name, _, _, metropolitan = SIDO[si]
        k = per_sido_count.get(sido_code, 0)
        per_sido_count[sido_code] = k + 1
        code5 = f"{sido_code}{110 + 10 * k:03d}"
        kind = "구" if metropolitan else ("군" if rng.random() < 0.3 else "시")
        base_name = _syllable_names(rng, 1, taken)[0]
        n_emd = int(rng.integers(emd_per_sigungu[0], emd_per_sigungu[1] + 1))
        n_emd = max(1, min(n_emd, int(hh // 20)))
        emd_households = _split_total(rng, int(hh), n_emd, 0.3)
        emd_names = _syllable_names(rng, n_emd, set())
        emds: list[EmdSpec] = []
        counters = {"동": 0, "읍": 0, "면": 0}
        for j in range(n_emd):
            if kind == "구":
                emd_type = "동"
            elif kind == "시":
                emd_type = "동" if rng.random() < 0.75 else ("읍" if rng.random() < 0.4 else "면")
            else:
                emd_type = "읍" if j == 0 else "면"
            c = counters[emd_type]
            counters[emd_type] = c + 1
            digits = {"동": 510 + 3 * c, "읍": 250 + 3 * c, "면": 310 + 3 * c}[emd_type]
            suffix = f"{emd_names[j]}{emd_type}"
            emds.append(
                EmdSpec(
                    code=f"{code5}{digits:03d}00",
                    name=suffix,
                    emd_type=emd_type,
                    households=int(emd_households[j]),
                    effect=float(rng.normal(0.0, 0.15)),
                )
            )
        specs.append(
            SigunguSpec(
                ordinal=ordinal,
                code=f"{code5}00000",
                name=f"{base_name}{kind}",
                sido_code=sido_code,
                sido_name=sido_name,
                effect=float(rng.normal(0.0, 0.25)),
                emds=tuple(sorted(emds, key=lambda e: e.code)),
            )
        )
    return specs


def regions_table(specs: list[SigunguSpec]) -> pd.DataFrame:
    """The hierarchical region table: every 시도, and the generated 시군구 and 읍면동."""
    rows: list[dict[str, object]] = []
    for sido_code, sido_name, _, _, _ in SIDO:
        rows.append(
            {
                "region_code": f"{sido_code}00000000",
                "level": "sido",
                "name": sido_name,
                "parent_code": None,
                "sido_code": f"{sido_code}00000000",
                "sigungu_code": None,
                "emd_type": None,
                "urban": None,
            }
        )
    for spec in specs:
        rows.append(
            {
                "region_code": spec.code,
                "level": "sigungu",
                "name": spec.name,
                "parent_code": f"{spec.sido_code}00000000",
                "sido_code": f"{spec.sido_code}00000000",
                "sigungu_code": spec.code,
                "emd_type": None,
                "urban": None,
            }
        )
        for emd in spec.emds:
            rows.append(
                {
                    "region_code": emd.code,
                    "level": "emd",
                    "name": emd.name,
                    "parent_code": spec.code,
                    "sido_code": f"{spec.sido_code}00000000",
                    "sigungu_code": spec.code,
                    "emd_type": emd.emd_type,
                    "urban": emd.emd_type == "동",
                }
            )
    frame = pd.DataFrame(rows)
    frame["urban"] = frame["urban"].astype("boolean")
    return frame.sort_values("region_code", kind="stable").reset_index(drop=True)


def capacity_table(specs: list[SigunguSpec], capacity_share: float) -> pd.DataFrame:
    """Cases per round per 읍면동: about ``capacity_share`` of its households, at least 2."""
    rows = []
    for spec in specs:
        for emd in spec.emds:
            capacity = max(2, round(emd.households * capacity_share))
            rows.append(
                {
                    "emd_code": emd.code,
                    "sigungu_code": spec.code,
                    "caseworkers": max(1, round(capacity / 100 + 0.49)),
                    "capacity_per_round": int(capacity),
                }
            )
    return pd.DataFrame(rows).sort_values("emd_code", kind="stable").reset_index(drop=True)

"""Households and their members for one 시군구 partition, with synthetic direct identifiers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.generate.regions import SigunguSpec
from pipeline.vocabulary import BENEFIT_STATUSES, INCOME_BANDS, RELATIONS, TENURES

_SURNAMES = "김이박최정강조윤장임한오서신권황안송류전홍고문양손배백허유남심노하곽성차주우구민"
_SURNAME_WEIGHTS = np.array(
    [
        21.5,
        14.7,
        8.4,
        4.7,
        4.3,
        2.4,
        2.1,
        2.1,
        2.0,
        1.7,
        1.5,
        1.5,
        1.5,
        1.5,
        1.4,
        1.4,
        1.3,
        1.3,
        1.2,
        1.1,
        1.1,
        0.9,
        0.9,
        0.9,
        0.8,
        0.8,
        0.8,
        0.8,
        0.7,
        0.6,
        0.6,
        0.6,
        0.6,
        0.6,
        0.6,
        0.5,
        0.4,
        0.4,
        0.4,
        0.4,
    ]
)
_GIVEN = "민서지현우준영수진하은도윤예성주연아재희태혜경상호정미선동"
_ROAD = "중앙대학문화평화한빛새솔푸른행복희망사랑소망봄별"


def _digits_table(width: int) -> pa.Array:
    return pa.array([f"{i:0{width}d}" for i in range(10**width)], type=pa.string())


@dataclass(frozen=True)
class Population:
    """One partition's households and members, and the per-household arrays the simulation uses."""

    households: pd.DataFrame
    members: pd.DataFrame
    emd_index: np.ndarray
    income: np.ndarray
    tenure: np.ndarray
    benefit: np.ndarray
    member_offset: np.ndarray
    adults: np.ndarray
    minors: np.ndarray
    oldest: np.ndarray
    head_age: np.ndarray
    any_disability: np.ndarray
    single_parent: np.ndarray


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def generate_population(
    spec: SigunguSpec, rng: np.random.Generator, reference_year: int
) -> Population:
    """Households and members of one 시군구; ages are counted at ``reference_year``."""
    emd_households = np.array([e.households for e in spec.emds])
    n = int(emd_households.sum())
    emd_index = np.repeat(np.arange(len(spec.emds)), emd_households)
    rural = np.array([e.emd_type != "동" for e in spec.emds])[emd_index]

    # Household size: Korea has about 35% one-person households; more in rural areas.
    size_p = np.array([0.35, 0.29, 0.19, 0.13, 0.03, 0.01])
    size = rng.choice(6, size=n, p=size_p) + 1
    size = np.where(rural & (size > 2) & (rng.random(n) < 0.3), 2, size)

    # Head age band: one-person households split young / middle / elderly.
    u = rng.random(n)
    elderly_share = np.where(rural, 0.45, 0.25)
    head_age = np.where(
        u < elderly_share,
        rng.integers(65, 91, size=n),
        np.where(
            u < elderly_share + 0.3, rng.integers(24, 40, size=n), rng.integers(40, 65, size=n)
        ),
    )
    head_age = np.where((size >= 3) & (head_age > 70), rng.integers(35, 60, size=n), head_age)

    # Income band (share of the standard median income) depends on age and size.
    income_logit = rng.normal(0.0, 1.0, size=n) - 0.9 * (head_age >= 65) - 0.4 * (size == 1)
    income_logit += 0.3 * (size >= 3)
    cuts = np.array([-1.45, -0.9, -0.25, 0.35])
    income = np.searchsorted(cuts, income_logit)  # 0 = under_30 ... 4 = over_100

    # Tenure depends on income and age.
    tenure_scores = np.stack(
        [
            0.9 + 0.35 * income + 0.02 * (head_age - 45),
            0.3 + 0.1 * income - 0.01 * (head_age - 45),
            1.0 - 0.2 * income,
            -0.5 - 0.5 * income + 0.6 * (income == 0),
            -1.6 - 0.2 * income,
        ],
        axis=1,
    )
    tenure_scores += rng.gumbel(size=tenure_scores.shape)
    tenure = np.argmax(tenure_scores, axis=1)

    benefit = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    benefit[(income == 0) & (u < 0.42)] = 2
    benefit[(income == 0) & (u >= 0.42) & (u < 0.62)] = 1
    benefit[(income == 1) & (u < 0.18)] = 1

    # Members: head, spouse, then other adults, then children; minors last.
    has_spouse = (size >= 2) & (rng.random(n) < np.where(size == 2, 0.7, 0.82))
    member_offset = np.concatenate([[0], np.cumsum(size)[:-1]])
    n_members = int(size.sum())
    household_of = np.repeat(np.arange(n), size)
    position = np.arange(n_members) - member_offset[household_of]

    relation = np.full(n_members, 2, dtype=np.int64)  # child by default
    age = np.zeros(n_members, dtype=np.int64)
    relation[position == 0] = 0
    age[position == 0] = head_age
    spouse_pos = (position == 1) & has_spouse[household_of]
    relation[spouse_pos] = 1
    age[spouse_pos] = np.clip(
        head_age[household_of[spouse_pos]] + rng.integers(-5, 6, spouse_pos.sum()), 20, 99
    )
    rest = position >= 1 + has_spouse[household_of]
    hh_age = head_age[household_of]
    child_age = hh_age - rng.integers(24, 40, size=n_members)
    is_parent = rest & (hh_age < 55) & (rng.random(n_members) < 0.08)
    relation[is_parent] = 3
    age[is_parent] = np.clip(hh_age[is_parent] + rng.integers(24, 35, is_parent.sum()), 60, 99)
    is_other = rest & ~is_parent & ((child_age < 0) | (rng.random(n_members) < 0.04))
    relation[is_other] = 4
    age[is_other] = rng.integers(18, 80, size=is_other.sum())
    is_child = rest & ~is_parent & ~is_other
    age[is_child] = np.clip(child_age[is_child], 0, 60)

    # Minors last inside each household, so that member positions split adults | minors.
    minor = age < 18
    order = np.lexsort((position, minor, household_of))
    relation, age, minor = relation[order], age[order], minor[order]
    position = np.arange(n_members) - member_offset[household_of]
    minors = np.bincount(household_of, weights=minor, minlength=n).astype(np.int64)
    adults = size - minors
    oldest_pos = pd.Series(age).groupby(household_of).idxmax().to_numpy() - member_offset
    head_sex = (rng.random(n) < np.where(head_age >= 75, 0.62, 0.3)).astype(np.int64)
    sex = rng.integers(0, 2, n_members)
    sex = np.where(relation == 1, 1 - head_sex[household_of], sex)
    sex = np.where(position == 0, head_sex[household_of], sex)
    disability_p = np.where(age >= 65, 0.11, np.where(age >= 18, 0.045, 0.015))
    disability = rng.random(n_members) < disability_p
    any_disability = np.bincount(household_of, weights=disability, minlength=n) > 0
    single_parent = (~has_spouse) & (minors > 0)

    birth_year = reference_year - age
    household_key = _join(
        "H",
        pc.take(_digits_table(3), pa.array(np.full(n, spec.ordinal % 1000))),
        pc.take(_digits_table(4), pa.array(np.arange(n) // 1000 % 10000)),
        pc.take(_digits_table(3), pa.array(np.arange(n) % 1000)),
    )

    # Resident-number-like ids: YYMMDD-G + 3 digits of the partition + 3 digits of a sequence
    # inside (partition, birth date, sex), which keeps them unique across partitions.
    month = rng.integers(1, 13, size=n_members)
    day = rng.integers(1, 29, size=n_members)
    century_digit = np.where(birth_year >= 2000, 3, 1) + sex
    date_key = (birth_year * 10000 + month * 100 + day) * 2 + sex
    sequence = pd.Series(date_key).groupby(date_key).cumcount().to_numpy() % 1000
    two = _digits_table(2)
    three = _digits_table(3)
    resident_id = _join(
        pc.take(two, pa.array(birth_year % 100)),
        pc.take(two, pa.array(month)),
        pc.take(two, pa.array(day)),
        "-",
        pc.take(pa.array([str(d) for d in range(10)]), pa.array(century_digit)),
        pc.take(three, pa.array(np.full(n_members, (spec.ordinal * 389 + 211) % 1000))),
        pc.take(three, pa.array(sequence)),
    )
    surnames = pa.array(list(_SURNAMES))
    given = pa.array(list(_GIVEN))
    head_surname = rng.choice(len(_SURNAMES), size=n, p=_SURNAME_WEIGHTS / _SURNAME_WEIGHTS.sum())
    surname_idx = np.where(
        ((relation == 2) & (rng.random(n_members) < 0.95)) | (position == 0),
        head_surname[household_of],
        rng.choice(len(_SURNAMES), size=n_members, p=_SURNAME_WEIGHTS / _SURNAME_WEIGHTS.sum()),
    )
    name = _join(
        pc.take(surnames, pa.array(surname_idx)),
        pc.take(given, pa.array(rng.integers(0, len(_GIVEN), n_members))),
        pc.take(given, pa.array(rng.integers(0, len(_GIVEN), n_members))),
    )

    four = _digits_table(4)
    phone = _join(
        "010-",
        pc.take(four, pa.array(rng.integers(0, 10000, n))),
        "-",
        pc.take(four, pa.array(rng.integers(0, 10000, n))),
    )
    road = pa.array([a + b for a in _ROAD[::2] for b in _ROAD[1::2]])
    emd_names = pa.array([f"{spec.sido_name} {spec.name} {e.name}" for e in spec.emds])
    apartment = rng.random(n) < 0.5
    unit = pa.array(
        np.where(
            apartment,
            np.char.add(
                np.char.add(" ", (100 + rng.integers(1, 20, n)).astype(str)),
                np.char.add(
                    "동 ",
                    np.char.add(
                        (rng.integers(1, 25, n) * 100 + rng.integers(1, 9, n)).astype(str), "호"
                    ),
                ),
            ),
            "",
        )
    )
    address = _join(
        pc.take(emd_names, pa.array(emd_index)),
        " ",
        pc.take(road, pa.array(rng.integers(0, len(road), n))),
        "로",
        pc.take(three, pa.array(rng.integers(1, 100, n))).cast(pa.int32()).cast(pa.string()),
        "길 ",
        pc.take(three, pa.array(rng.integers(1, 300, n))).cast(pa.int32()).cast(pa.string()),
        unit,
    )

    households = pd.DataFrame(
        {
            "household_key": pd.array(household_key, dtype="string"),
            "emd_code": pd.Categorical.from_codes(
                emd_index, categories=[e.code for e in spec.emds]
            ),
            "size": size.astype(np.int8),
            "tenure": pd.Categorical.from_codes(tenure, categories=list(TENURES)),
            "income_band": pd.Categorical.from_codes(income, categories=list(INCOME_BANDS)),
            "benefit_status": pd.Categorical.from_codes(benefit, categories=list(BENEFIT_STATUSES)),
            "address": pd.array(address, dtype="string"),
            "phone": pd.array(phone, dtype="string"),
        }
    )
    members = pd.DataFrame(
        {
            "resident_id": pd.array(resident_id, dtype="string"),
            "name": pd.array(name, dtype="string"),
            "household_key": pd.Categorical.from_codes(
                household_of, categories=pd.Index(pd.array(household_key, dtype="string"))
            ),
            "relation": pd.Categorical.from_codes(relation, categories=list(RELATIONS)),
            "birth_year": birth_year.astype(np.int16),
            "sex": pd.Categorical.from_codes(sex, categories=["M", "F"]),
            "disability": disability,
        }
    )
    return Population(
        households=households,
        members=members,
        emd_index=emd_index,
        income=income,
        tenure=tenure,
        benefit=benefit,
        member_offset=member_offset,
        adults=adults,
        minors=minors,
        oldest=oldest_pos,
        head_age=head_age,
        any_disability=any_disability,
        single_parent=single_parent,
    )

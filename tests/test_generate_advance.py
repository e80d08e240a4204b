"""The world moves on: `outreach generate --advance` continues the hidden process from its saved
state, deterministically, with lagged signals, source dates, contact effects and atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_config, write_config_file

from pipeline.catalogue import IndicatorCatalogue
from pipeline.cli import main
from pipeline.datasets import TableLayout
from pipeline.datasets.truth import (
    UNTREATED_TABLE,
    read_round_truth,
    read_untreated_file,
    read_untreated_since,
    truth_files,
    truth_for_round,
)
from pipeline.errors import DataError, UsageError
from pipeline.generate import advance as advance_module
from pipeline.generate.advance import advance, untreated_preview
from pipeline.generate.stage import generate
from pipeline.generate.world import PENDING_EVENTS, SUPPORTS, WORLD_STATE
from pipeline.io import sha256_tree
from pipeline.months import format_month, parse_month, parse_month_series

SMALL = {"households": 3000, "sigungu": 2, "emd_per_sigungu": [2, 3]}
STATE_FILES = ("crisis_events", "household_month", WORLD_STATE, PENDING_EVENTS, SUPPORTS)


@pytest.fixture(scope="module")
def world(tmp_path_factory, catalogue):
    """A small generated world (3,000 households, 2 partitions), never changed: copy it."""
    root = tmp_path_factory.mktemp("world")
    config = make_config(root, generator=SMALL)
    generate(config, catalogue, root / "base")
    return config, root / "base"


def _copy(world, tmp_path: Path, name: str) -> Path:
    _, base = world
    target = tmp_path / name
    shutil.copytree(base, target)
    return target


def _read(root: Path, table: str) -> pd.DataFrame:
    folder = "raw" if table == "crisis_events" else "truth"
    layout = TableLayout(root / folder)
    parts = [pd.read_parquet(layout.partition_file(table, c)) for c in layout.partitions(table)]
    return pd.concat(parts, ignore_index=True)


def _digests(root: Path) -> dict[str, str]:
    """sha256 of the data and state files (not the JSON records, which log each advance)."""
    files = {**sha256_tree(root / "raw"), **sha256_tree(root / "truth")}
    return {k: v for k, v in files.items() if k.split("/")[0] in STATE_FILES}


def _at(config, month: int):
    return config.with_overrides(window={"end": format_month(month)})


def _in_need_now(root: Path, month: str) -> pd.DataFrame:
    truth = _read(root, "household_month")
    return truth[(truth["month"] == month) & truth["in_need"]]


def _contacts(keys, month: str, code: str) -> pd.DataFrame:
    return pd.DataFrame({"household_key": list(keys), "contact_month": month, "outcome_code": code})


def test_the_saved_state_is_the_last_window_month(world):
    """The state holds the process at window.end: it gives back that month's hardship."""
    config, root = world
    state = _read(root, WORLD_STATE)
    truth = _read(root, "household_month")
    last = truth[truth["month"] == config.window.end].reset_index(drop=True)
    assert state["household_key"].tolist() == last["household_key"].tolist()
    from pipeline.generate.process import WEIGHTS

    weighted = sum(weight * state[name] for name, weight in WEIGHTS.items())
    hardship = state["base"] + state["strain"] + weighted + state["noise"]
    assert np.abs(hardship.to_numpy() - last["hardship"].to_numpy()).max() < 0.006
    pending = _read(root, PENDING_EVENTS)
    assert len(pending) > 0
    reported = parse_month_series(pending["reported_month"])
    assert (reported > config.window.end_index).all()
    assert (parse_month_series(pending["event_month"]) <= config.window.end_index).all()


def test_same_state_seed_and_contacts_give_the_same_bytes(world, catalogue, tmp_path):
    config, root = world
    keys = _in_need_now(root, config.window.end)["household_key"].head(40)
    contacts = _contacts(keys, format_month(config.window.end_index + 1), "public_support")
    a, b = _copy(world, tmp_path, "a"), _copy(world, tmp_path, "b")
    advance(config, catalogue, a, 2, contacts, outcome_codes=["public_support"])
    advance(config, catalogue, b, 2, contacts, outcome_codes=["public_support"])
    assert sha256_tree(a / "raw") == sha256_tree(b / "raw")
    assert sha256_tree(a / "truth") == sha256_tree(b / "truth")
    assert _digests(a) != _digests(root)


def test_two_months_then_two_is_four_at_once(world, catalogue, tmp_path):
    """Each month draws from its own stream: the chunking of the advance does not matter, and a
    contact passed again the next time is not counted twice."""
    config, root = world
    end = config.window.end_index
    keys = _in_need_now(root, config.window.end)["household_key"].head(60)
    contacts = pd.concat(
        [
            _contacts(keys[:30], format_month(end + 1), "public_support"),
            _contacts(keys[30:], format_month(end + 3), "private_support"),
        ]
    )
    codes = ["public_support", "private_support"]
    stepwise, at_once = _copy(world, tmp_path, "step"), _copy(world, tmp_path, "once")
    advance(config, catalogue, stepwise, 2, contacts, outcome_codes=codes)
    advance(_at(config, end + 2), catalogue, stepwise, 2, contacts, outcome_codes=codes)
    advance(config, catalogue, at_once, 4, contacts, outcome_codes=codes)
    assert _digests(stepwise) == _digests(at_once)
    truth = _read(at_once, "household_month")
    assert truth["month"].max() == format_month(end + 4)
    assert len(truth) == SMALL["households"] * (config.window.months + 4)
    assert not truth.duplicated(["household_key", "month"]).any()
    # the history's own supports (past rounds' contacts) stay; the 60 contacts add theirs
    assert len(_read(at_once, SUPPORTS)) == len(_read(root, SUPPORTS)) + 60


def test_lagged_signals_of_earlier_months_arrive_later(world, catalogue, tmp_path):
    config, root = world
    end = config.window.end_index
    pending = _read(root, PENDING_EVENTS)
    due = pending[parse_month_series(pending["reported_month"]) <= end + 2]
    target = _copy(world, tmp_path, "lag")
    before = len(_read(target, "crisis_events"))
    result = advance(config, catalogue, target, 2)
    events = _read(target, "crisis_events")
    assert len(events) == before + result.events_added
    new = events[parse_month_series(events["reported_month"]) > end]  # the window's rows: <= end
    assert len(new) == result.events_added
    event_m = parse_month_series(new["event_month"])
    reported_m = parse_month_series(new["reported_month"])
    assert reported_m.between(end + 1, end + 2).all()
    late = new[event_m <= end]
    assert len(late) == len(due) > 0
    assert (reported_m - event_m).between(0, 3).all()
    assert (event_m > end).sum() > 0
    # Each partition keeps its order: by reported month first.
    layout = TableLayout(target / "raw")
    for code in layout.partitions("crisis_events"):
        part = pd.read_parquet(layout.partition_file("crisis_events", code))
        assert (np.diff(parse_month_series(part["reported_month"]).to_numpy()) >= 0).all()
    left = _read(target, PENDING_EVENTS)
    assert (parse_month_series(left["reported_month"]) > end + 2).all()
    # Volume goes on as before: the new months carry about as many signals as the last ones.
    per_month = events.groupby("reported_month").size()
    recent = per_month.loc[[format_month(end - 2), format_month(end - 1), format_month(end)]]
    added = per_month.loc[[format_month(end + 1), format_month(end + 2)]]
    assert 0.8 < added.mean() / recent.mean() < 1.25


def test_sources_start_and_stop_by_their_dates(world, catalogue, tmp_path):
    config, _ = world
    end = config.window.end_index
    data = catalogue.model_dump()
    starting, stopping = "telecom_arrears", "health_ins_arrears"
    assert {starting, stopping} <= set(catalogue.codes)
    for ind in data["indicators"]:
        if ind["code"] == starting:
            ind["available_from"] = format_month(end + 2)
        if ind["code"] == stopping:
            ind["available_until"] = format_month(end + 1)
    changed = IndicatorCatalogue.model_validate(data)
    target = _copy(world, tmp_path, "sources")
    advance(config, changed, target, 2)
    events = _read(target, "crisis_events")
    new = events[parse_month_series(events["reported_month"]) > end]
    event_m = parse_month_series(new["event_month"])
    fresh = new[event_m > end]
    assert set(fresh.loc[fresh["indicator_code"] == starting, "event_month"]) == {
        format_month(end + 2)
    }
    assert (
        parse_month_series(fresh.loc[fresh["indicator_code"] == stopping, "event_month"]) <= end + 1
    ).all()
    assert (fresh["indicator_code"] == stopping).sum() > 0


def test_contact_links_support_and_the_household_recovers_faster(world, catalogue, tmp_path):
    config, root = world
    end = config.window.end_index
    in_need = _in_need_now(root, config.window.end)["household_key"].tolist()
    assert len(in_need) > 100
    linked, unreachable = in_need[::2], in_need[1::2]
    contacts = pd.concat(
        [
            _contacts(linked, format_month(end + 1), "public_support"),
            _contacts(unreachable, format_month(end + 1), "unreachable"),
        ]
    )
    codes = ["public_support", "unreachable"]
    months = 4
    runs = {}
    for name, effect, given in (
        ("none", 0.2, None),
        ("zero", 0.0, contacts),
        ("default", 0.2, contacts),
        ("strong", 0.4, contacts),
    ):
        target = _copy(world, tmp_path, name)
        cfg = config.with_overrides(generator={"contact_effect": {"public_support": effect}})
        advance(cfg, catalogue, target, months, given, outcome_codes=codes)
        truth = _read(target, "household_month")
        runs[name] = truth[parse_month_series(truth["month"]) > end].reset_index(drop=True)
        runs[name + "_dir"] = target

    none = runs["none"]
    # An effect of 0 and unreachable contacts change nothing, to the byte.
    zero, nothing = _digests(runs["zero_dir"]), _digests(runs["none_dir"])
    for key, digest in nothing.items():
        if key.startswith(SUPPORTS):
            assert zero[key] != digest  # the ledger records the contacts
        else:
            assert zero[key] == digest, key
    untouched = ~none["household_key"].isin(linked)
    pd.testing.assert_frame_equal(none[untouched], runs["default"][untouched])

    def need_months(run: pd.DataFrame) -> float:
        rows = run[run["household_key"].isin(linked)]
        return rows.groupby("household_key")["in_need"].sum().mean()

    base, default, strong = (
        need_months(none),
        need_months(runs["default"]),
        need_months(runs["strong"]),
    )
    assert default < base - 0.3, (base, default)
    assert strong < default, (default, strong)
    # Households contacted and linked leave need sooner: fewer still in need after 4 months.
    last = format_month(end + months)
    still = {
        name: runs[name]
        .loc[(runs[name]["month"] == last) & runs[name]["household_key"].isin(linked), "in_need"]
        .mean()
        for name in ("none", "default")
    }
    assert still["default"] < still["none"]


def test_the_effect_has_the_configured_size(world, catalogue, tmp_path):
    """One month of support multiplies the household's strain and shocks by 1 - effect (the
    draws are the same with and without it: common random numbers)."""
    config, root = world
    end = config.window.end_index
    keys = _in_need_now(root, config.window.end)["household_key"].tolist()
    contacts = _contacts(keys, format_month(end + 1), "private_support")
    effect = 0.3
    cfg = config.with_overrides(generator={"contact_effect": {"private_support": effect}})
    states = {}
    for name, given in (("without", None), ("with", contacts)):
        target = _copy(world, tmp_path, name)
        advance(cfg, catalogue, target, 1, given, outcome_codes=["private_support"])
        states[name] = _read(target, WORLD_STATE).set_index("household_key")
    linked = states["with"].index.isin(keys)
    # a household still supported after a past round's contact is relieved by both: the size
    # of this one effect shows on the others
    layout = TableLayout(root / "truth")
    running = set()
    for code in layout.partitions(SUPPORTS):  # supports name a household by its row
        held = pd.read_parquet(layout.partition_file(SUPPORTS, code))
        rows = pd.read_parquet(layout.partition_file(WORLD_STATE, code))["household_key"]
        late = held["end_month"].astype(str) >= format_month(end + 1)
        running |= set(rows.iloc[held.loc[late, "household"]])
    alone = linked & ~states["with"].index.isin(list(running))
    assert alone.sum() > 20
    for column in ("strain", "job", "illness", "disaster", "benefit_loss", "housing"):
        ratio = states["with"].loc[alone, column] / states["without"].loc[alone, column]
        ratio = ratio[states["without"].loc[alone, column] > 0]
        assert np.allclose(ratio, 1 - effect, rtol=1e-5), column
    pd.testing.assert_frame_equal(states["with"][~linked], states["without"][~linked])
    assert np.array_equal(states["with"]["noise"], states["without"]["noise"])


def test_a_failure_mid_write_leaves_tables_and_state_intact(
    world, catalogue, tmp_path, monkeypatch
):
    config, _ = world
    target = _copy(world, tmp_path, "fail")
    before_raw, before_truth = sha256_tree(target / "raw"), sha256_tree(target / "truth")
    real = advance_module.write_parquet
    calls = {"n": 0}

    def failing(table, path):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        real(table, path)

    monkeypatch.setattr(advance_module, "write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        advance(config, catalogue, target, 2)
    assert calls["n"] == 4
    assert sha256_tree(target / "raw") == before_raw
    assert sha256_tree(target / "truth") == before_truth
    assert [p.name for p in target.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(advance_module, "write_parquet", real)
    advance(config, catalogue, target, 2)  # and the world can still move on


def test_wrong_window_end_unknown_keys_and_codes_are_refused(world, catalogue, tmp_path):
    config, root = world
    target = _copy(world, tmp_path, "refuse")
    before = sha256_tree(target / "truth")
    with pytest.raises(UsageError, match=r"window\.end"):
        advance(_at(config, config.window.end_index + 2), catalogue, target, 2)
    with pytest.raises(UsageError, match=r"generator\.seed"):
        advance(config.with_overrides(generator={"seed": 5}), catalogue, target, 2)
    month = format_month(config.window.end_index + 1)
    with pytest.raises(DataError, match="H999"):
        advance(
            config,
            catalogue,
            target,
            2,
            _contacts(["H9990000001"], month, "public_support"),
            outcome_codes=["public_support"],
        )
    key = _read(root, WORLD_STATE)["household_key"].iloc[0]
    with pytest.raises(DataError, match="unknown outcome"):
        advance(config, catalogue, target, 2, _contacts([key], month, "hugs"), outcome_codes=["x"])
    assert sha256_tree(target / "truth") == before
    # Raw and truth that were not swapped in together (a killed advance) are refused.
    record = target / "raw" / "_generation.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    data["window"]["end"] = format_month(config.window.end_index + 2)
    record.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match="not swapped in together"):
        advance(config, catalogue, target, 2)


def test_the_command_advances_by_one_round_interval(world, tmp_path, capsys):
    config, root = world
    target = _copy(world, tmp_path, "cli")
    end = config.window.end_index
    key = _read(root, WORLD_STATE)["household_key"].iloc[0]
    contacts = tmp_path / "contacts.csv"
    _contacts([key], format_month(end + 1), "private_support").to_csv(contacts, index=False)
    config_file = write_config_file(config, tmp_path / "c.yaml")
    argv = ["--no-progress", "--config", str(config_file), "generate", "--output-dir", str(target)]
    assert main([*argv, "--advance", "--contacts", str(contacts)]) == 0
    out = capsys.readouterr().out
    new_end = format_month(end + config.window.round_interval_months)
    assert f"window.end: {new_end}" in out
    truth = _read(target, "household_month")
    assert truth["month"].max() == new_end
    assert main([*argv, "--advance"]) == 2  # the config's window.end is no longer the data's end
    moved = write_config_file(_at(config, parse_month(new_end)), tmp_path / "c2.yaml")
    argv[2] = str(moved)
    assert main([*argv, "--advance", "2"]) == 0
    assert _read(target, "household_month")["month"].max() == format_month(end + 4)
    assert main([*argv, "--contacts", str(contacts)]) == 2  # --contacts needs --advance


def test_the_untreated_need_is_the_need_without_the_advances_own_contacts(
    world, catalogue, tmp_path
):
    """The advance records, beside the truth, the need of its months had its contacts not been
    made; the preview computes the same from the saved state and changes nothing; the readers
    of a round's truth judge the round on it."""
    config, root = world
    end = config.window.end_index
    linked = _in_need_now(root, config.window.end)["household_key"].tolist()[::2]
    contacts = _contacts(linked, format_month(end + 1), "public_support")
    codes = ["public_support"]
    plain, treated = _copy(world, tmp_path, "plain"), _copy(world, tmp_path, "treated")
    before = _digests(treated)
    preview = untreated_preview(config, catalogue, treated, 2)
    assert _digests(treated) == before  # the preview leaves the world as it is
    advance(config, catalogue, plain, 2, None, outcome_codes=codes)
    advance(config, catalogue, treated, 2, contacts, outcome_codes=codes)

    truth = _read(treated, "household_month")
    truth = truth[parse_month_series(truth["month"]) > end].reset_index(drop=True)
    untreated = _read(treated, UNTREATED_TABLE)
    no_contact = _read(plain, "household_month")
    no_contact = no_contact[parse_month_series(no_contact["month"]) > end].reset_index(drop=True)
    assert untreated["household_key"].tolist() == truth["household_key"].tolist()
    assert untreated["month"].tolist() == truth["month"].tolist()
    # untreated = the world advanced without these contacts (common random numbers) ...
    assert untreated["in_need"].tolist() == no_contact["in_need"].tolist()
    # ... = the preview, and the support relieved some of the linked households' need
    pd.testing.assert_frame_equal(
        preview.sort_values(["household_key", "month"]).reset_index(drop=True),
        untreated.sort_values(["household_key", "month"]).reset_index(drop=True),
        check_dtype=False,
    )
    contacted = truth["household_key"].isin(linked).to_numpy()
    assert (
        untreated["in_need"].to_numpy()[~contacted] == truth["in_need"].to_numpy()[~contacted]
    ).all()
    relieved = untreated["in_need"].to_numpy() & ~truth["in_need"].to_numpy()
    assert relieved[contacted].sum() > 10 and not relieved[~contacted].any()

    # A round's truth (evaluation, the loop's measures) reads the untreated need of the round.
    files = truth_files(config.with_overrides(paths={"truth_input": str(treated / "truth")}))
    keys = pd.Series(sorted(linked), dtype="string")
    judged = read_round_truth(files, keys, end + 1)["in_need"].to_numpy()
    expected = (
        truth_for_round(
            untreated.assign(month=parse_month_series(untreated["month"]).astype("int64")), end + 1
        )["in_need"]
        .reindex(pd.Index(keys))
        .to_numpy(dtype=bool)
    )
    after = (
        truth_for_round(
            truth.assign(month=parse_month_series(truth["month"]).astype("int64")), end + 1
        )["in_need"]
        .reindex(pd.Index(keys))
        .to_numpy(dtype=bool)
    )
    assert (judged == expected).all() and (judged != after).any()
    since = read_untreated_since(treated / "truth", end + 1)
    assert len(since) == len(untreated) and since["in_need"].sum() == untreated["in_need"].sum()


def test_the_command_writes_the_untreated_need_without_moving_the_world(world, tmp_path, capsys):
    config, root = world
    target = _copy(world, tmp_path, "preview")
    before = _digests(target)
    config_file = write_config_file(config, tmp_path / "c.yaml")
    argv = ["--no-progress", "--config", str(config_file), "generate", "--output-dir", str(target)]
    path = tmp_path / "untreated.parquet"
    assert main([*argv, "--advance", "--untreated-need", str(path)]) == 0
    assert "the world is unchanged" in capsys.readouterr().out
    assert _digests(target) == before
    need = read_untreated_file(path)
    interval = config.window.round_interval_months
    assert sorted(need["month"].unique()) == [
        config.window.end_index + i for i in range(1, interval + 1)
    ]
    assert len(need) == interval * len(_read(root, WORLD_STATE))
    contacts = tmp_path / "contacts.csv"
    _contacts(
        [need["household_key"].iloc[0]], format_month(config.window.end_index + 1), "x"
    ).to_csv(contacts, index=False)
    # only a preview of the world as it is: with contacts it is refused
    assert (
        main([*argv, "--advance", "--contacts", str(contacts), "--untreated-need", str(path)]) == 2
    )

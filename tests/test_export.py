"""``outreach export``: each 읍면동's list and report page as a bundle encrypted with its office's
key, opened by that office only, recorded in the ledger; keys never in the ledger or the logs.

The module exports a copy of the scored sample once (with its report written), through the CLI,
with keys made by ``outreach export keygen``; the tests read what it wrote.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, copy_outputs, write_config_file
from cryptography.fernet import Fernet

from pipeline.audit.readers import read_list
from pipeline.cli import main
from pipeline.datasets.rounds import EXPORT, MANIFEST, REPORT, bundle_path
from pipeline.errors import DataError, UsageError
from pipeline.export.bundle import MANIFEST as BUNDLE_MANIFEST
from pipeline.export.bundle import open_bundle, seal, zip_files
from pipeline.export.keys import OfficeKeys, parse_keys, read_key_file, resolve_keys
from pipeline.export.stage import open_to_folder, round_offices
from pipeline.io import read_json_file, sha256_file
from pipeline.lineage import ledger
from pipeline.vocabulary import KEY


def _run(config_file: Path, *args: str, env: dict[str, str] | None = None):
    """``outreach --config FILE ARGS`` in this process with DEBUG logging: exit code, stdout and
    stderr (the log lines go to stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(
                ["--no-progress", "--log-level", "DEBUG", "--config", str(config_file), *args]
            )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(scored_sample, tmp_path_factory):
    """A copy of the scored sample with its report, keys for every office of the round (one
    combined key file, one file per office), and the round exported with the keys named in the
    environment."""
    tmp = tmp_path_factory.mktemp("export")
    copy = copy_outputs(scored_sample, tmp)
    code, _, err = _run(copy.config_file, "report", "--as-of", copy.as_of)
    assert code == 0, err
    keys_dir = tmp / "keys"
    runs = {}
    runs["keygen"] = _run(
        copy.config_file,
        "export",
        "keygen",
        "--round",
        copy.as_of,
        "--out",
        str(keys_dir / "keys.json"),
        "--per-office",
        str(keys_dir / "offices"),
    )
    assert runs["keygen"][0] == 0, runs["keygen"][2]
    runs["export"] = _run(
        copy.config_file,
        "export",
        "--as-of",
        copy.as_of,
        env={"OUTREACH_OFFICE_KEYS": str(keys_dir / "keys.json")},
    )
    assert runs["export"][0] == 0, runs["export"][2]
    manifest = read_json_file(copy.round_dir / MANIFEST)
    return {
        "copy": copy,
        "tmp": tmp,
        "keys": keys_dir / "keys.json",
        "offices_dir": keys_dir / "offices",
        "offices": round_offices(manifest),
        "runs": runs,
    }


def _office_key_file(exported, emd: str) -> Path:
    return exported["offices_dir"] / f"office_{emd}.json"


def _secrets(path: Path) -> list[str]:
    keys = json.loads(path.read_text(encoding="utf-8"))["offices"]
    return [k for v in keys.values() for k in ([v] if isinstance(v, str) else v)]


def test_each_bundle_opens_with_its_own_key_and_holds_its_files_byte_for_byte(exported):
    copy, offices = exported["copy"], exported["offices"]
    assert len(offices) == 18
    for emd, office in offices.items():
        out = exported["tmp"] / "opened" / emd
        opened = open_to_folder(
            bundle_path(copy.round_dir, office.sigungu, emd),
            read_key_file(_office_key_file(exported, emd)),
            out,
        )
        want = sorted([*office.files, f"{REPORT}/emd/{emd}.html"])
        assert sorted(opened.files) == want
        assert opened.manifest["round"] == copy.as_of and opened.manifest["emd_code"] == emd
        for name in want:
            assert (out / name).read_bytes() == (copy.round_dir / name).read_bytes(), name
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert written == sorted([BUNDLE_MANIFEST, *want])


def test_the_office_opens_its_bundle_through_the_cli(exported):
    copy = exported["copy"]
    emd, office = next(iter(exported["offices"].items()))
    bundle = bundle_path(copy.round_dir, office.sigungu, emd)
    out = exported["tmp"] / "cli_opened"
    code, stdout, err = _run(
        copy.config_file,
        "export",
        "open",
        str(bundle),
        "--key-file",
        str(_office_key_file(exported, emd)),
        "--out",
        str(out),
    )
    assert code == 0, err
    assert f"읍면동 {emd}, 3 file(s) checked" in stdout
    csv_name = next(n for n in office.files if n.endswith(".csv"))
    assert (out / csv_name).read_bytes() == (copy.round_dir / csv_name).read_bytes()


def test_another_offices_key_fails_with_a_clear_error_and_writes_nothing(exported):
    copy = exported["copy"]
    (emd, office), (other, _) = list(exported["offices"].items())[:2]
    bundle = bundle_path(copy.round_dir, office.sigungu, emd)
    out = exported["tmp"] / "not_opened"
    code, _, err = _run(
        copy.config_file,
        "export",
        "open",
        str(bundle),
        "--key-file",
        str(_office_key_file(exported, other)),
        "--out",
        str(out),
    )
    assert code == 1
    assert f"bundle of 읍면동 {emd}" in err and "holds no key of that office" in err
    assert not out.exists()
    # the other office's key filed under this office's code: the key itself is wrong
    other_key = _secrets(_office_key_file(exported, other))[0]
    mislabelled = exported["tmp"] / "mislabelled.json"
    mislabelled.write_text(json.dumps({"offices": {emd: other_key}}), encoding="utf-8")
    code, _, err = _run(
        copy.config_file,
        "export",
        "open",
        str(bundle),
        "--key-file",
        str(mislabelled),
        "--out",
        str(out),
    )
    assert code == 1
    assert "wrong key" in err and emd in err and other_key not in err
    assert not out.exists()


def test_a_tampered_bundle_fails_and_writes_nothing(exported):
    copy = exported["copy"]
    emd, office = next(iter(exported["offices"].items()))
    data = bundle_path(copy.round_dir, office.sigungu, emd).read_bytes()
    keys = read_key_file(_office_key_file(exported, emd))
    changed = bytearray(data)
    at = len(data) - 40  # a base64 character of the ciphertext or its HMAC
    changed[at] = ord("A") if changed[at] != ord("A") else ord("B")
    tampered = exported["tmp"] / "tampered.bundle"
    tampered.write_bytes(bytes(changed))
    out = exported["tmp"] / "tampered_out"
    with pytest.raises(DataError, match="changed or damaged"):
        open_to_folder(tampered, keys, out)
    assert not out.exists()
    # a header naming another office does not pass for that office's bundle either
    other = list(exported["offices"])[1]
    relabelled = data.replace(f"office={emd}".encode(), f"office={other}".encode(), 1)
    both = OfficeKeys({**keys.keys, other: keys.keys[emd]}, "two offices, one key")
    with pytest.raises(DataError, match="the header names"):
        open_bundle(relabelled, both, "relabelled.bundle")


def test_no_household_key_appears_in_the_bundle_bytes(exported):
    copy = exported["copy"]
    seen = 0
    for emd, office in exported["offices"].items():
        csv_name = next(n for n in office.files if n.endswith(".csv"))
        households = set(read_list(copy.round_dir / csv_name)[KEY])
        data = bundle_path(copy.round_dir, office.sigungu, emd).read_bytes()
        plain = open_bundle(data, read_key_file(exported["keys"]), emd).files
        assert all(h.encode() in plain[csv_name] for h in households)  # they are in the list
        for household in households:
            assert household.encode() not in data
            assert household.encode("utf-16-le") not in data
        seen += len(households)
    assert seen > 300


def test_the_ledger_has_one_export_record_per_office_and_still_verifies(exported):
    copy = exported["copy"]
    read = ledger.read(copy.config.paths.output_root)
    assert read.problems == ()
    records = ledger.entries_of(read.entries, ledger.BUNDLE_EXPORTED, round=copy.as_of)
    assert sorted(r["facts"]["emd_code"] for r in records) == sorted(exported["offices"])
    keys = read_key_file(exported["keys"])
    for record in records:
        facts = record["facts"]
        emd = facts["emd_code"]
        office = exported["offices"][emd]
        assert record["by"] == ledger.actor()
        bundle = copy.round_dir / facts["bundle"]
        assert bundle == bundle_path(copy.round_dir, office.sigungu, emd)
        assert facts["bundle_sha256"] == sha256_file(bundle)
        assert facts["key_fingerprint"] == keys.encrypting_fingerprint(emd)
        assert facts["round_manifest_sha256"] == sha256_file(copy.round_dir / MANIFEST)
        names = [f["name"] for f in facts["files"]]
        assert names == sorted([*office.files, f"{REPORT}/emd/{emd}.html"])
        for f in facts["files"]:
            assert f["sha256"] == sha256_file(copy.round_dir / f["name"])
    # the audit of the round still passes: the bundles lie outside the round's manifest
    code, stdout, err = _run(copy.config_file, "audit", str(copy.round_dir))
    assert code == 0, stdout + err
    assert "PASSED" in stdout


def test_keys_never_reach_the_ledger_the_logs_or_the_terminal(exported):
    copy = exported["copy"]
    secrets = _secrets(exported["keys"])
    assert len(secrets) == 18
    ledger_text = ledger.ledger_file(copy.config.paths.output_root).read_text(encoding="utf-8")
    keygen, export = exported["runs"]["keygen"], exported["runs"]["export"]
    assert "DEBUG" in export[2] or "INFO" in export[2]  # the logs were captured
    assert "pipeline.export.stage" in export[2]
    for secret in secrets:
        for text in (ledger_text, *keygen[1:], *export[1:]):
            assert secret not in text
            assert secret.rstrip("=") not in text
    assert stat.S_IMODE(exported["keys"].stat().st_mode) == 0o600
    for path in exported["offices_dir"].iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(_secrets(path)) == 1


def test_an_office_without_a_key_exports_nothing_unless_offices_are_named(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)  # no report: bundles hold the lists only
    offices = round_offices(read_json_file(copy.round_dir / MANIFEST))
    keyless = sorted(offices)[3]
    keys = {e: Fernet.generate_key().decode() for e in offices if e != keyless}
    key_file = tmp_path / "keys" / "keys.json"
    key_file.parent.mkdir()
    key_file.write_text(json.dumps({"offices": keys}), encoding="utf-8")
    config = copy.config.with_overrides(export={"key_file": str(key_file)})
    config_file = write_config_file(config, tmp_path / "with_keys.yaml")
    root = copy.config.paths.output_root
    ledger_before = ledger.ledger_file(root).read_bytes()
    code, _, err = _run(config_file, "export", "--as-of", copy.as_of)
    assert code == 2
    assert f"no key for 읍면동 {keyless}" in err and "nothing exported" in err
    assert not (copy.round_dir / EXPORT).exists()
    assert ledger.ledger_file(root).read_bytes() == ledger_before
    # naming the offices to export: only those, the keyless one left out
    named = sorted(keys)[:2]
    code, stdout, err = _run(config_file, "export", "--emd", ",".join(named))
    assert code == 0, err
    assert "no report written" in stdout
    bundles = sorted(p.name for p in (copy.round_dir / EXPORT).rglob("*.bundle"))
    assert bundles == [f"emd_{e}.bundle" for e in named]
    records = ledger.entries_of(ledger.read(root).entries, ledger.BUNDLE_EXPORTED)
    assert [r["facts"]["emd_code"] for r in records] == named
    opened = open_bundle(
        bundle_path(copy.round_dir, offices[named[0]].sigungu, named[0]).read_bytes(),
        read_key_file(key_file),
        "bundle",
    )
    assert sorted(opened.files) == sorted(offices[named[0]].files)
    # a list changed since the round was scored is never exported, and a failure at the second
    # office leaves the first office's earlier bundle, the ledger and the round folder as they were
    csv_name = next(n for n in offices[named[1]].files if n.endswith(".csv"))
    with (copy.round_dir / csv_name).open("ab") as handle:
        handle.write(b"\n")
    first = bundle_path(copy.round_dir, offices[named[0]].sigungu, named[0])
    before, ledger_before = first.read_bytes(), ledger.ledger_file(root).read_bytes()
    code, _, err = _run(config_file, "export", "--emd", ",".join(named))
    assert code == 1 and csv_name in err and "changed since it was written" in err
    assert first.read_bytes() == before  # a new export would differ: Fernet's IV is random
    assert ledger.ledger_file(root).read_bytes() == ledger_before
    assert not [p.name for p in copy.round_dir.iterdir() if p.name.startswith(".")]


def test_keygen_refuses_the_repository_and_an_existing_file(exported, tmp_path):
    config_file = exported["copy"].config_file
    inside = REPO_ROOT / "office_keys_test.json"
    code, _, err = _run(
        config_file, "export", "keygen", "--emd", "1111051000", "--out", str(inside)
    )
    assert code == 2 and "inside the repository" in err
    assert not inside.exists()
    code, _, err = _run(
        config_file, "export", "keygen", "--emd", "1111051000", "--out", str(exported["keys"])
    )
    assert code == 2 and "never overwritten" in err
    code, _, err = _run(
        config_file, "export", "keygen", "--emd", "12AB", "--out", str(tmp_path / "k")
    )
    assert code == 2 and "not a 10-digit" in err
    assert not (tmp_path / "k").exists()


def test_keygen_rotate_puts_a_new_key_first_and_the_old_bundles_still_open(exported, tmp_path):
    copy = exported["copy"]
    emd, office = next(iter(exported["offices"].items()))
    key_file = tmp_path / "office.json"
    key_file.write_bytes(_office_key_file(exported, emd).read_bytes())
    old = read_key_file(key_file)
    code, stdout, err = _run(
        copy.config_file, "export", "keygen", "--emd", emd, "--out", str(key_file), "--rotate"
    )
    assert code == 0, err
    new = read_key_file(key_file)
    assert len(new.keys[emd]) == 2 and new.keys[emd][1] == old.keys[emd][0]
    assert new.encrypting_fingerprint(emd) != old.encrypting_fingerprint(emd)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert all(k.decode() not in stdout + err for k in new.keys[emd])
    bundle = bundle_path(copy.round_dir, office.sigungu, emd).read_bytes()
    assert sorted(open_bundle(bundle, new, "bundle").files) == sorted(
        [*office.files, f"{REPORT}/emd/{emd}.html"]
    )


def test_keys_come_from_the_environment_or_a_key_file_outside_the_repository(
    config_factory, tmp_path
):
    key = Fernet.generate_key().decode()
    text = json.dumps({"offices": {"1111051000": key}})
    config = config_factory(tmp_path / "outputs")
    keys = resolve_keys(config, {"OUTREACH_OFFICE_KEYS": text})
    assert keys.offices() == ["1111051000"] and key not in repr(keys)
    with pytest.raises(UsageError, match="no office keys"):
        resolve_keys(config, {})
    inside = config_factory(tmp_path / "outputs", export={"key_file": str(REPO_ROOT / "k.json")})
    with pytest.raises(UsageError, match="inside the repository"):
        resolve_keys(inside, {})
    with pytest.raises(UsageError, match="not a Fernet key") as err:
        parse_keys(json.dumps({"offices": {"1111051000": key[:-4]}}), "test keys")
    assert key[:-4] not in str(err.value)


def test_a_rotated_key_still_opens_the_bundles_of_the_one_before():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    files = {"lists/1111000000/emd_1111051000.csv": b"a,b\n1,2\n"}
    before = OfficeKeys({"1111051000": (old,)}, "old")
    sealed = seal(
        before,
        round_label="2026-10",
        emd="1111051000",
        sigungu="1111000000",
        files=files,
        round_manifest_sha256="0" * 64,
    )
    rotated = OfficeKeys({"1111051000": (new, old)}, "rotated")
    assert open_bundle(sealed.data, rotated, "b").files == files
    with pytest.raises(DataError, match="wrong key"):
        open_bundle(sealed.data, OfficeKeys({"1111051000": (new,)}, "new only"), "b")


def test_the_zip_is_deterministic_with_the_manifest_first():
    files = {"z.csv": b"1", "a/b.html": b"<p>", "m.xlsx": b"x"}
    first = zip_files({"round": "2026-10"}, files)
    assert first == zip_files({"round": "2026-10"}, dict(reversed(list(files.items()))))
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == [BUNDLE_MANIFEST, "a/b.html", "m.xlsx", "z.csv"]


def test_nothing_is_left_behind_beside_the_bundles(exported):
    export_dir = exported["copy"].round_dir / EXPORT
    assert not [p for p in exported["copy"].round_dir.iterdir() if p.name.startswith(".")]
    assert len(list(export_dir.rglob("*.bundle"))) == len(exported["offices"])

"""CLI wrapper of ``outreach export``: the offices' encrypted bundles (docs/export.md).

- ``outreach export [--as-of YYYY-MM] [--emd CODES]``: each 읍면동's list and report page as a
  bundle encrypted with that office's key, one ledger record each; all or nothing.
- ``outreach export open BUNDLE --out DIR [--key-file FILE]``: an office opens its bundle.
- ``outreach export keygen (--emd CODES | --round YYYY-MM) --out FILE [--per-office DIR]
  [--rotate]``: new keys for offices, written with mode 0600 outside the repository; with
  ``--rotate`` a new key goes in front of each named office's keys in the existing FILE.

Exit codes: 0 done; 1 a file changed, a wrong key or a changed bundle; 2 a usage error (no key
for an office, a key file inside the repository, an existing output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import resolve_as_of


def _codes(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes:
        raise argparse.ArgumentTypeError("expected 읍면동 codes separated by commas")
    return codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM of a scored round (default: the next round after the window)",
    )
    parser.add_argument(
        "--emd",
        dest="offices",
        type=_codes,
        metavar="CODES",
        help="export only these 읍면동 (codes separated by commas); default: every 읍면동 with a "
        "list, each of which must have a key",
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", parser_class=type(parser), required=False
    )
    opener = actions.add_parser(
        "open",
        help="decrypt an office's bundle with its key and check it; write its files into DIR",
        description="Decrypt a bundle with the office's key, check every file against the "
        "bundle's manifest (sha256) and write them into DIR (a new or empty folder). A wrong key "
        "or a changed bundle: exit 1, nothing written.",
    )
    opener.add_argument("bundle", type=Path, metavar="BUNDLE", help="an emd_<읍면동>.bundle file")
    opener.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write")
    opener.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="key file holding the office's key (default: export.key_env or export.key_file)",
    )
    keygen = actions.add_parser(
        "keygen",
        help="make a new key for each office; write the key file (mode 600, outside the repo)",
        description="Make a new Fernet key for each 읍면동 and write them into a new key file "
        "(mode 600; never over an existing file; refused inside the repository). With "
        "--per-office DIR, also one file per office holding only its own key, to hand over.",
    )
    which = keygen.add_mutually_exclusive_group(required=True)
    which.add_argument("--emd", dest="keygen_emd", type=_codes, metavar="CODES")
    which.add_argument("--round", metavar="YYYY-MM", help="every 읍면동 with a list in the round")
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE", help="new key file")
    keygen.add_argument(
        "--per-office", type=Path, metavar="DIR", help="also office_<읍면동>.json per office"
    )
    keygen.add_argument(
        "--rotate",
        action="store_true",
        help="FILE exists: put a new key in front of each named office's keys (the old ones "
        "still open earlier bundles) and replace FILE (and the offices' --per-office files)",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action is None:
        return _export(config, args)
    if action == "open":
        return _open(config, args)
    if action == "keygen":
        return _keygen(config, args)
    raise UsageError(f"export: unknown action {action!r}")  # argparse offers only those


def _export(config: Config, args: argparse.Namespace) -> int:
    from pipeline.export.keys import resolve_keys
    from pipeline.export.stage import export_round

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    keys = resolve_keys(config)
    result = export_round(config, as_of, keys, getattr(args, "offices", None))
    what = "list and report page" if result.with_pages else "list (no report written)"
    print(
        f"exported round {result.round}: {len(result.bundles)} 읍면동 bundle(s), each its {what}, "
        f"encrypted with the office's key ({result.key_source})"
    )
    for done in result.bundles:
        print(
            f"  {done.office.emd}: {done.path.relative_to(result.folder)} "
            f"(key {done.sealed.manifest['key_fingerprint']}, ledger entry {done.seq})"
        )
    print(f"written to {result.folder / 'export'}")
    return EXIT_OK


def _open(config: Config, args: argparse.Namespace) -> int:
    from pipeline.export.keys import read_key_file, resolve_keys
    from pipeline.export.stage import open_to_folder

    keys = read_key_file(args.key_file) if args.key_file is not None else resolve_keys(config)
    opened = open_to_folder(args.bundle, keys, args.out)
    m = opened.manifest
    print(
        f"opened {args.bundle}: round {m.get('round')}, 읍면동 {m.get('emd_code')}, "
        f"{len(opened.files)} file(s) checked against the bundle's manifest (sha256)"
    )
    for name in sorted(opened.files):
        print(f"  {name}")
    print(f"written to {args.out}")
    return EXIT_OK


def _keygen(config: Config, args: argparse.Namespace) -> int:
    from pipeline.export.keys import (
        PER_OFFICE_FILE,
        fingerprint,
        key_file_text,
        new_keys,
        read_key_file,
        refuse_inside_repository,
        rotated,
        write_secret,
    )
    from pipeline.export.stage import round_emd_codes

    if args.round is not None:
        offices = round_emd_codes(config, resolve_as_of(config.window, args.round, "--round"))
    else:
        offices = args.keygen_emd
    new = new_keys(offices)
    refuse_inside_repository(args.out, "key file")
    keys: dict[str, list[str]] = {emd: [key] for emd, key in new.items()}
    if args.rotate:
        if not args.out.is_file():
            raise UsageError(f"export keygen --rotate: no key file {args.out} to rotate")
        keys = rotated(read_key_file(args.out), new)
    singles = {}
    if args.per_office is not None:
        refuse_inside_repository(args.per_office, "folder")
        singles = {args.per_office / PER_OFFICE_FILE.format(emd=e): e for e in new}
    existing = [str(p) for p in [args.out, *singles] if p.exists()]
    if existing and not args.rotate:
        raise UsageError(f"export keygen: {existing[0]} exists; keys are never overwritten")
    write_secret(args.out, key_file_text(keys), replace=args.rotate)
    for path, emd in singles.items():
        write_secret(path, key_file_text({emd: keys[emd]}), replace=args.rotate)
    verb = "rotated the keys of" if args.rotate else "wrote new keys of"
    print(f"{verb} {len(new)} 읍면동 in {args.out} (mode 600); new fingerprints:")
    for emd, key in new.items():
        print(f"  {emd}: {fingerprint(key.encode('ascii'))}")
    if singles:
        print(
            f"one file per office in {args.per_office} ({PER_OFFICE_FILE.format(emd='<읍면동>')})"
        )
    return EXIT_OK

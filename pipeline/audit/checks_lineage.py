"""The seal and ledger links (pure: facts in, findings out).

- ``scoring seal`` / ``training seal``: the run's sealed record is there, its sha256 is the one
  every other place records (the run's tag, the version's tag, the round manifest, the ledger),
  and the record built from the store now is the sealed one, fact by fact.
- ``ledger``: the chain verifies; the head the round manifest recorded is in it; the round's
  ``round scored`` entry records this manifest and scoring run; the round's model version was
  registered through the ledger; the registry's aliases are where the ledger's moves put them, and
  every version in the registry was registered through the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.audit.facts_lineage import SealFacts
from pipeline.audit.findings import LEDGER, Finding, dig, result, short
from pipeline.lineage import ledger
from pipeline.lineage.ledger import Ledger
from pipeline.lineage.seals import differences
from pipeline.tracking.runs import RegistryState
from pipeline.tracking.seal import RUN_TAG


def check_seal(link: str, what: str, facts: SealFacts) -> list[Finding]:
    """The run's seal against every place that records it and against the store now."""
    run = f"{what} run {short(facts.run_id)}"
    if facts.sealed is None:
        return [result(link, [f"{run}: not sealed ({facts.sealed_error})"], "")]
    sha = facts.sealed_sha256
    problems = []
    for place, recorded in facts.recorded.items():
        if not recorded:
            problems.append(f"{place} records no seal of the {what} run (sealed {short(sha)})")
        elif recorded != sha:
            problems.append(
                f"{place} records seal {short(recorded)}, the {what} run's sealed record has "
                f"sha256 {short(sha)}: the sealed record or {place} was changed"
            )
    sealed, error = facts.sealed_record
    if sealed is None:
        problems.append(f"{run}: {error}")
    elif facts.now is None:
        problems.append(f"{run}: its record cannot be read from the store now ({facts.now_error})")
    else:
        problems.extend(f"{run}: {d}" for d in differences(sealed, facts.now))
    count = _fact_count(sealed) if sealed else 0
    places = ", ".join(facts.recorded)
    return [
        result(
            link,
            problems,
            f"{run}: seal {short(sha)} recorded alike by {places}; "
            f"{count:,} sealed facts as in the store now",
        )
    ]


def _fact_count(record: Mapping[str, Any]) -> int:
    total = 0
    for value in record.values():
        total += len(value) if isinstance(value, dict | list) else 1
    return total


def seal_places(
    run_tags: Mapping[str, str] | None, others: Mapping[str, str | None]
) -> dict[str, str | None]:
    """The places that record a run's seal: its own tag first, then ``others``."""
    return {f"the run's tag {RUN_TAG}": (run_tags or {}).get(RUN_TAG), **others}


def check_ledger(
    book: Ledger,
    manifest: Mapping[str, Any],
    manifest_sha: str,
    registry: RegistryState | None,
    report_sha: str | None = None,
) -> list[Finding]:
    """The ledger's chain, the round's place in it, the round's report record (``report_sha``:
    the sha256 of ``report/report.json`` when the round has one) and the registry's agreement
    with it."""
    if not book.entries and not book.problems:
        return [
            result(
                LEDGER,
                [f"{book.path} not found or empty: the round's lineage events are not recorded"],
                "",
            )
        ]
    problems = list(book.problems)
    entries = book.entries
    problems.extend(_head_problems(entries, manifest.get("ledger")))
    round_label = str(manifest.get("round"))
    problems.extend(_round_problems(entries, round_label, manifest, manifest_sha))
    model = str(dig(manifest, "model.name"))
    version = str(dig(manifest, "model.version"))
    registered = ledger.entries_of(entries, ledger.MODEL_REGISTERED, model=model, version=version)
    if not registered:
        problems.append(f"{model} v{version} has no `model registered` entry in the ledger")
    elif (registered[-1].get("facts") or {}).get("run_id") != dig(
        manifest, "model.training_run_id"
    ):
        problems.append(
            f"the ledger registered {model} v{version} from run "
            f"{short((registered[-1].get('facts') or {}).get('run_id'))}, the round names "
            f"{short(dig(manifest, 'model.training_run_id'))}"
        )
    if report_sha is not None:
        problems.extend(_report_problems(entries, round_label, report_sha))
    if registry is not None:
        problems.extend(_registry_problems(entries, model, registry))
    head = book.head
    return [
        result(
            LEDGER,
            problems,
            f"{len(entries)} entries chain to head {head.seq} {short(head.sha256)}; the round's "
            f"head {dig(manifest, 'ledger.seq')} and its `round scored` entry are in it; the "
            "registry's aliases are the ledger's",
        )
    ]


def _head_problems(entries: tuple[dict[str, Any], ...], recorded: Any) -> list[str]:
    if not isinstance(recorded, Mapping):
        return ["the round manifest records no ledger head"]
    seq, sha = recorded.get("seq"), recorded.get("sha256")
    if seq == 0:
        return []  # the round was the first event (an empty ledger before it)
    if not isinstance(seq, int) or seq < 0:
        return [f"the round manifest's ledger head {seq!r} is not an entry number"]
    if seq > len(entries):
        return [
            f"the round was scored at ledger head {seq}, the ledger has {len(entries)} entries: "
            "entries were removed"
        ]
    found = str(entries[seq - 1].get("sha256"))
    if found != sha:
        return [
            f"ledger entry {seq} has sha256 {short(found)}, the round recorded {short(sha)} as "
            "the head when it was scored: the ledger was rewritten"
        ]
    return []


def _round_problems(
    entries: tuple[dict[str, Any], ...],
    round_label: str,
    manifest: Mapping[str, Any],
    manifest_sha: str,
) -> list[str]:
    scored = ledger.entries_of(entries, ledger.ROUND_SCORED, round=round_label)
    if not scored:
        return [f"no `round scored` entry for round {round_label} in the ledger"]
    last = scored[-1]
    facts = last.get("facts") or {}
    problems = []
    if facts.get("manifest_sha256") != manifest_sha:
        problems.append(
            f"ledger entry {last.get('seq')} (round scored {round_label}) records manifest "
            f"sha256 {short(facts.get('manifest_sha256'))}, the manifest has "
            f"{short(manifest_sha)}"
        )
    if facts.get("scoring_run_id") != dig(manifest, "scoring_run.run_id"):
        problems.append(
            f"ledger entry {last.get('seq')} records scoring run "
            f"{short(facts.get('scoring_run_id'))}, the manifest "
            f"{short(dig(manifest, 'scoring_run.run_id'))}"
        )
    head = dig(manifest, "ledger.seq")
    if isinstance(head, int) and int(last.get("seq", 0)) <= head:
        problems.append(
            f"ledger entry {last.get('seq')} (round scored) comes before the head {head} the "
            "round recorded"
        )
    return problems


def _report_problems(
    entries: tuple[dict[str, Any], ...], round_label: str, report_sha: str
) -> list[str]:
    written = ledger.entries_of(entries, ledger.REPORT_WRITTEN, round=round_label)
    if not written:
        return [f"report/report.json of round {round_label} has no `report written` entry"]
    recorded = (written[-1].get("facts") or {}).get("report_sha256")
    if recorded != report_sha:
        return [
            f"report/report.json has sha256 {short(report_sha)}, the ledger's entry "
            f"{written[-1].get('seq')} (report written) records {short(recorded)}: the report "
            "record was changed"
        ]
    return []


def _registry_problems(
    entries: tuple[dict[str, Any], ...], model: str, registry: RegistryState
) -> list[str]:
    if registry.error:
        return [registry.error]
    problems = []
    expected = ledger.expected_aliases(entries, model)
    for alias, version in expected.items():
        now = registry.aliases.get(alias)
        if now != version:
            where = f"points to v{now}" if now else "is on no version"
            wanted = f"v{version}" if version else "no version"
            problems.append(
                f"the {alias} alias of {model} {where}, the ledger expects {wanted}: moved "
                "outside the project's commands"
            )
    for alias, now in sorted(registry.aliases.items()):
        if alias not in expected:
            problems.append(f"alias {alias} of {model} (v{now}) is not one the ledger records")
    registered = {
        str((e.get("facts") or {}).get("version"))
        for e in ledger.entries_of(entries, ledger.MODEL_REGISTERED, model=model)
    }
    for version in registry.versions:
        if version not in registered:
            problems.append(
                f"{model} v{version} is in the registry but was never registered through the ledger"
            )
    return problems

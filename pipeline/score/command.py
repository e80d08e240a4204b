"""CLI wrapper of ``outreach score``.

Before scoring, the round's feature folder is current (built first when missing or out of date:
:func:`prerequisites`) and the model version can score it (:func:`refuse_unfit_model`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import resolve_as_of
from pipeline.stages import Prerequisite, feature_rounds_needed

SHOWN_COLUMNS = 5  # missing inputs named in the message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of", help="round month YYYY-MM (default: the next round after the data window)"
    )
    parser.add_argument(
        "--model-version",
        help="score with this registered version instead of the champion (e.g. to re-run a round)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="score a round that exists again (the old folder is kept in rounds/_replaced/)",
    )
    parser.add_argument(
        "--shadow",
        metavar="VERSION",
        help="score the scored round with this challenger version beside it, writing no list "
        "(rounds/YYYY-MM/shadow/vN/; docs/scoring.md, Shadow mode)",
    )


def prerequisites(config: Config, args: argparse.Namespace) -> list[Prerequisite]:
    """The round's feature folder when it is missing or out of date (nothing for a shadow: it
    reads the folder the round was scored from, as it was)."""
    if getattr(args, "shadow", None) is not None:
        return []
    return feature_rounds_needed(
        config, [resolve_as_of(config.window, getattr(args, "as_of", None))]
    )


def model_misfit(
    inputs: Sequence[str] | None,
    columns: Sequence[str],
    trained_spec: str | None,
    folder_spec: str | None,
) -> str | None:
    """Why a model whose input columns are ``inputs`` (None: unknown), trained on features of
    the spec digest ``trained_spec``, cannot score a feature folder holding ``columns`` built
    with ``folder_spec``; None when it can (a digest not recorded is not compared). Pure."""
    present = set(columns)
    missing = [c for c in inputs or () if c not in present]
    if missing:
        shown = ", ".join(missing[:SHOWN_COLUMNS])
        more = f" and {len(missing) - SHOWN_COLUMNS} more" if len(missing) > SHOWN_COLUMNS else ""
        return f"{len(missing)} of its input columns are not in the folder ({shown}{more})"
    if trained_spec and folder_spec and trained_spec != folder_spec:
        return (
            f"it was trained on features of another feature spec (sha256 {trained_spec[:12]}, "
            f"the folder's {folder_spec[:12]})"
        )
    return None


def refuse_unfit_model(config: Config, as_of: int, model_version: str | None) -> None:
    """A UsageError naming the version and the commands to run when the model that would score
    the round (the champion, or ``model_version``) cannot score its feature folder: an input
    column missing from the folder (its schema only is read), or features of another feature
    spec than those it was trained on. Nothing is checked when the folder is missing (scoring
    says so)."""
    from pipeline.datasets.features import (
        MANIFEST,
        feature_folder,
        folder_columns,
        read_folder_manifest,
    )
    from pipeline.tracking import connect, tracking_uri
    from pipeline.tracking.models import model_input_names, training_feature_spec
    from pipeline.tracking.registry import resolve_model

    folder = feature_folder(config, as_of)
    if not (folder / MANIFEST).is_file():
        return
    ref = resolve_model(connect(config), config.training.model_name, model_version)
    why = model_misfit(
        model_input_names(ref),
        folder_columns(folder),
        training_feature_spec(ref, tracking_uri(config)),
        read_folder_manifest(folder).get("feature_spec_sha256"),
    )
    if why is not None:
        raise UsageError(
            f"score: model {ref.name} v{ref.version} ({ref.alias or 'pinned'}) cannot score "
            f"{folder}: {why}: train one on these features (`outreach train`) or pin a version "
            "that fits (`--model-version N`)"
        )


def measure(config: Config, args: argparse.Namespace) -> int:
    """Score the round (for ``outreach bench``); returns the households read."""
    from pipeline.score.stage import score_round

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    refuse_unfit_model(config, as_of, None)  # bench scores with the champion
    result = score_round(config, as_of, force=bool(getattr(args, "force", False)))
    return result.counts["households"]


def run_shadow(config: Config, args: argparse.Namespace) -> int:
    """``outreach score --shadow VERSION``: print what the shadow scoring found."""
    from pipeline.score.shadow import check_round, shadow_round

    if getattr(args, "model_version", None) is not None:
        raise UsageError("score: --shadow VERSION names the model: leave out --model-version")
    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    check_round(config, as_of)  # a round not scored: one line, exit 2
    refuse_unfit_model(config, as_of, str(args.shadow))
    result = shadow_round(config, as_of, str(args.shadow), force=bool(args.force))
    s = result.summary
    visit, listed = s["overlap"]["visit"], s["overlap"]["listed"]
    ranks = s["rank_correlation"]

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(
        f"shadow {result.model.name} v{result.model.version} beside v{result.champion_version} "
        f"on round {result.round}: {s['counts']['scored']:,} eligible households, no list written"
    )
    print(
        f"  overlap per 읍면동 (Jaccard, mean over {visit['emd']}): visit tier "
        f"{num(visit['mean'])} (min {num(visit['min'])}), listed {num(listed['mean'])}; "
        f"rank correlation Spearman {num(ranks['spearman'])}, Kendall {num(ranks['kendall'])}"
    )
    fair = s["fairness"]["listed"]["max_abs_share_difference"]
    off = s["offpolicy"]
    off_text = (
        f"off-policy precision difference (DR) {num(off['difference'].get('dr'))}"
        if off.get("available")
        else f"off-policy difference: {off['why']}"
    )
    print(f"  largest change of an audited group's share of the list {num(fair)}; {off_text}")
    print(f"written to {result.folder} in {result.seconds:.1f} s (MLflow run {result.run_id})")
    return EXIT_OK


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.score.stage import score_round

    if getattr(args, "shadow", None) is not None:
        return run_shadow(config, args)
    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    model_version = getattr(args, "model_version", None)
    refuse_unfit_model(config, as_of, model_version)
    result = score_round(
        config,
        as_of,
        model_version=model_version,
        force=bool(getattr(args, "force", False)),
    )
    c = result.counts
    print(
        f"round {result.round}: {c['scored']:,} eligible households scored with "
        f"{result.model.name} v{result.model.version} ({result.model.alias or 'pinned'}); "
        f"{c['ineligible']:,} left out as ineligible"
    )
    print(
        f"  visit {c['visit']:,} (of which {c['explored']:,} random exploration), "
        f"phone {c['phone']:,}, monitor {c['monitor']:,}; "
        f"{c['emd']} 읍면동 in {c['sigungu']} 시군구"
    )
    if c.get("emd_without_capacity"):
        print(
            f"  warning: {c['emd_without_capacity']} 읍면동 have no capacity: nobody listed there"
        )
    print(f"written to {result.folder} in {result.seconds:.1f} s (MLflow run {result.run_id})")
    from pipeline.score.monitor import round_alarm_line  # docs/monitoring.md

    alarm = round_alarm_line(result.folder)
    if alarm:
        print(alarm)
    return EXIT_OK

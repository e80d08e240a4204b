"""Comparing a sealed record with the same record built again (pure).

A record (:mod:`pipeline.tracking.seal`) is a JSON object of sections: ``run``, ``params``,
``tags``, ``metrics`` (full histories), ``datasets``, ``artifacts`` (path -> sha256) and, for a
training run, ``model_version``. :func:`differences` names every fact that differs, in words an
auditor reads: ``param training.gates.max_ece: sealed "0.03", now "0.05"``.
"""

from __future__ import annotations

import json
from typing import Any

# How each section's facts are named.
SECTION_NAMES = {
    "run": "run",
    "params": "param",
    "tags": "tag",
    "metrics": "metric",
    "artifacts": "artifact",
    "datasets": "dataset inputs",
}
VERSION_SECTION_NAMES = {
    "tags": "version tag",
    "files_sha256": "model file",
    "description": "version description",
}
MISSING = object()


def _show(value: Any, width: int = 48) -> str:
    if value is MISSING:
        return "absent"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _change(label: str, sealed: Any, now: Any) -> str:
    if sealed is MISSING:
        return f"{label}: added after the seal (now {_show(now)})"
    if now is MISSING:
        return f"{label}: removed (sealed {_show(sealed)})"
    return f"{label}: sealed {_show(sealed)}, now {_show(now)}"


def _mapping_differences(label: str, sealed: Any, now: Any) -> list[str]:
    """Differences key by key when both are mappings, else one difference for the whole."""
    if isinstance(sealed, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(sealed) | set(now), key=str):
            a, b = sealed.get(key, MISSING), now.get(key, MISSING)
            if a != b:
                out.append(_change(f"{label} {key}", a, b))
        return out
    return [] if sealed == now else [_change(label, sealed, now)]


def _by_name(datasets: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in datasets:
        name = str(item.get("name")) if isinstance(item, dict) else str(item)
        out[name if name not in out else f"{name} ({len(out)})"] = item
    return out


def _dataset_differences(sealed: list[Any], now: list[Any]) -> list[str]:
    """Datasets matched by name; a changed one names the fields that differ."""
    a, b = _by_name(sealed), _by_name(now)
    out = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, MISSING), b.get(name, MISSING)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out.extend(_mapping_differences(f"dataset {name}", x, y))
        else:
            out.append(_change(f"dataset {name}", x, y))
    return out


def _history_text(history: Any) -> str:
    """``1 value, last 0.0521`` for a metric's ``[step, timestamp, value]`` history."""
    if not isinstance(history, list) or not history:
        return _show(history)
    values = len(history)
    last = history[-1][-1] if isinstance(history[-1], list) else history[-1]
    shown = f"{last:.6g}" if isinstance(last, float) else _show(last)
    return f"{values} value{'s' if values != 1 else ''}, last {shown}"


def _metric_differences(sealed: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """A metric's history changed, added or removed: how many values, and the last one."""
    out = []
    for key in sorted(set(sealed) | set(now)):
        a, b = sealed.get(key, MISSING), now.get(key, MISSING)
        if a == b:
            continue
        label = f"metric {key}"
        if a is MISSING:
            out.append(f"{label}: added after the seal ({_history_text(b)})")
        elif b is MISSING:
            out.append(f"{label}: removed (sealed {_history_text(a)})")
        else:
            out.append(f"{label}: sealed {_history_text(a)}; now {_history_text(b)}")
    return out


def differences(sealed: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every fact of ``now`` that differs from ``sealed``, named (empty: they agree)."""
    out: list[str] = []
    for section in sorted(set(sealed) | set(now)):
        a, b = sealed.get(section, MISSING), now.get(section, MISSING)
        if a == b:
            continue
        if section == "model_version" and isinstance(a, dict) and b is None:
            out.append(
                f"registered version: {a.get('name')} v{a.get('version')} is no longer in the "
                "registry"
            )
            continue
        if section == "model_version" and isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                name = VERSION_SECTION_NAMES.get(key, f"version {key}")
                out.extend(_mapping_differences(name, a.get(key, MISSING), b.get(key, MISSING)))
            continue
        if section == "datasets" and isinstance(a, list) and isinstance(b, list):
            out.extend(_dataset_differences(a, b))
            continue
        if section == "metrics" and isinstance(a, dict) and isinstance(b, dict):
            out.extend(_metric_differences(a, b))
            continue
        name = SECTION_NAMES.get(section, section)
        if a is MISSING or b is MISSING:
            out.append(_change(name, a, b))
        else:
            out.extend(_mapping_differences(name, a, b))
    return out

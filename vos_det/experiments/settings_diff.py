"""Which settings of a saved run differ from the ones requested now (Detectron2-free).

The benchmark's runs compare configs, the classifier's runs their settings; both refuse a saved
run made otherwise and name the changed keys, ``"KEY: old -> new"``.
"""

from typing import Collection, Dict, List, Mapping, Optional

__all__ = ["changed_settings", "flatten"]

_ABSENT = "(none)"


def flatten(tree: Mapping, prefix: str = "") -> Dict[str, object]:
    """A nested mapping as ``{"A.B.C": value}``."""
    flat: Dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(
    saved: Mapping,
    requested: Mapping,
    defaults: Optional[Mapping] = None,
    ignored: Collection[str] = (),
) -> List[str]:
    """``"KEY: old -> new"`` for every flattened key whose value differs, sorted by key.

    Args:
        saved (Mapping): the saved run's (nested) settings.
        requested (Mapping): the (nested) settings asked for now.
        defaults (Mapping or None): flattened defaults. A key the saved settings lack (an option
            added after the run) is no change while the requested value is its default: new
            options default to the behaviour before them.
        ignored (Collection[str]): flattened keys never compared (e.g. an output folder).

    Returns:
        list[str]: the changes; a key missing on one side shows as ``(none)``.
    """
    old, new = flatten(saved), flatten(requested)
    changes = []
    for key in sorted((old.keys() | new.keys()) - set(ignored)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if defaults is not None and key not in old and key in defaults and after == defaults[key]:
            continue
        if before != after:
            changes.append(f"{key}: {before} -> {after}")
    return changes

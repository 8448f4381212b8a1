"""The one check of a settings dataclass's fields (plain Python)."""

from typing import Iterable, Tuple

__all__ = ["check_fields"]


def check_fields(settings: object, checks: Iterable[Tuple[str, bool, str]]) -> None:
    """Raise on the first failed check, naming the field, the requirement and the value.

    Args:
        settings (object): the instance whose fields were checked (for the value in the message).
        checks (Iterable[tuple[str, bool, str]]): ``(field name, passed, requirement)``.

    Raises:
        ValueError: ``"<field> <requirement>, got <value>"`` for the first failed check.
    """
    for name, valid, requirement in checks:
        if not valid:
            raise ValueError(f"{name} {requirement}, got {getattr(settings, name)!r}")

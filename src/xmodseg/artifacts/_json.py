"""Reading the JSON documents of `xmodseg.artifacts`: every failure names the file and the fix."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from xmodseg.errors import InputDataError


def read_json(path: str | os.PathLike[str], what: str, fix: str) -> dict[str, Any]:
    """The JSON object in `path` (`what`: e.g. "preprocessing manifest"; `fix`: what to rerun)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputDataError(f"{p}: no {what} ({fix})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{p}: unreadable {what} ({exc}); {fix}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{p}: {what} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(doc, dict):
        raise InputDataError(f"{p}: {what} is not a JSON object; {fix}")
    return doc


def check_keys(d: Any, required: Collection[str], optional: Collection[str], where: str, fix: str) -> None:
    """Refuse a non-object, a missing required key or a key that is neither required nor optional.

    `where` names the file (and the place inside it), `fix` what to do about it."""
    if not isinstance(d, Mapping):
        raise InputDataError(f"{where}: expected a JSON object, got {type(d).__name__} ({fix})")
    missing = [k for k in required if k not in d]
    if missing:
        raise InputDataError(f"{where}: missing key(s) {', '.join(missing)} ({fix})")
    unknown = [k for k in d if k not in required and k not in optional]
    if unknown:
        known = ", ".join([*required, *optional])
        raise InputDataError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {known} ({fix})")

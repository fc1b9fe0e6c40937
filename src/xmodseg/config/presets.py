"""Training presets referenced by name: `train: {preset: sifa_paper, iterations: 5000}`.

A config's `presets:` holds named `train` blocks; an experiment's or translator's `train` (or
another preset) names one with `preset:` and overrides any of its keys (nested blocks such as
`network` are merged key by key). Expanded before the config is validated, so every later step (the
schema, the typed config, the job's `--params`, the resume hash) sees the plain block: a preset and
the same block written out are the same experiment. YAML anchors (`train: *seg`) keep working.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from xmodseg.errors import ConfigError

KEY = "preset"


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def _resolve(block: Any, presets: Mapping[str, Any], where: str, seen: tuple[str, ...] = ()) -> Any:
    if not isinstance(block, Mapping) or KEY not in block:
        return block
    name = block[KEY]
    if not isinstance(name, str) or name not in presets:
        raise ConfigError(f"{where}.{KEY}: '{name}' is not one of the presets {sorted(presets)}")
    if name in seen:
        raise ConfigError(f"{where}.{KEY}: presets refer to each other in a circle ({' -> '.join((*seen, name))})")
    base = _resolve(presets[name], presets, f"presets.{name}", (*seen, name))
    if not isinstance(base, Mapping):
        raise ConfigError(f"presets.{name}: a preset is a `train` block (a mapping), got {type(base).__name__}")
    return merged(base, {k: v for k, v in block.items() if k != KEY})


def expand_presets(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every `preset:` reference (in experiments, translators and presets)
    replaced by the preset's block plus the overrides."""
    out = copy.deepcopy(dict(config))
    presets = out.get("presets") or {}
    if not isinstance(presets, Mapping):
        raise ConfigError("presets: expected a mapping of name -> train block")
    if presets:
        out["presets"] = {name: _resolve(block, presets, f"presets.{name}", (name,)) for name, block in presets.items()}
    for section in ("experiments", "translators"):
        for name, entry in (out.get(section) or {}).items():
            if isinstance(entry, dict) and "train" in entry:
                entry["train"] = _resolve(entry["train"], presets, f"{section}.{name}.train")
    return out


def referenced(config: Mapping[str, Any], block: Any) -> list[str]:
    """The presets a `train` block uses by name, directly or through other presets (for the DVC
    stage's params: a change inside a preset must count as a change of every experiment using it)."""
    names: list[str] = []
    presets = config.get("presets") or {}
    while isinstance(block, Mapping) and isinstance(block.get(KEY), str) and block[KEY] not in names:
        names.append(block[KEY])
        block = presets.get(block[KEY])
    return names

"""Translators by name (separate from segmentation methods: their product is translated data)."""

from __future__ import annotations

from xmodseg.plugins import Registry
from xmodseg.translation.base import Translator

TRANSLATORS: Registry[Translator] = Registry("translator", "xmodseg.translation", "xmodseg.translators")
register_translator = TRANSLATORS.register
get_translator = TRANSLATORS.get
available_translators = TRANSLATORS.names

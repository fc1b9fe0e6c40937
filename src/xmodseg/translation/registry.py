"""Translators by name (separate from segmentation methods: their product is translated data)."""

from __future__ import annotations

from xmodseg.methods.base import Method
from xmodseg.plugins import Registry

TRANSLATORS: Registry[Method] = Registry("translator", ["xmodseg.translation.cyclegan", "xmodseg.translation.disentangled"])
register_translator = TRANSLATORS.register
get_translator = TRANSLATORS.get
available_translators = TRANSLATORS.names

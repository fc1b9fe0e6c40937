"""Registry of training methods by name; a new method is a module that registers itself here."""

from __future__ import annotations

from xmodseg.methods.base import DataNeeds, SegmentationMethod, TrainData
from xmodseg.plugins import Registry

METHODS: Registry[SegmentationMethod] = Registry("method", ["xmodseg.methods.supervised", "xmodseg.methods.sifa"])
register = METHODS.register
get_method = METHODS.get
available_methods = METHODS.names

__all__ = ["METHODS", "DataNeeds", "SegmentationMethod", "TrainData", "available_methods", "get_method", "register"]

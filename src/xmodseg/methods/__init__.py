"""Registry of segmentation methods by name: every module of this package (or of an installed
distribution's `xmodseg.methods` entry points) that registers itself with `register`."""

from __future__ import annotations

from xmodseg.methods.base import DataNeeds, SegmentationMethod, TrainData
from xmodseg.plugins import Registry

METHODS: Registry[SegmentationMethod] = Registry("method", "xmodseg.methods", "xmodseg.methods")
register = METHODS.register
get_method = METHODS.get
available_methods = METHODS.names

__all__ = ["METHODS", "DataNeeds", "SegmentationMethod", "TrainData", "available_methods", "get_method", "register"]

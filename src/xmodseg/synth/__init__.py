"""Embedded synthetic cross-modality cardiac phantom (bSSFP-like MR and contrast-CT-like images of
unpaired random subjects, MM-WHS labels), so the pipeline runs end to end without downloads."""

from xmodseg.synth.generate import generate_case, generate_modality
from xmodseg.synth.params import PhantomParams

__all__ = ["PhantomParams", "generate_case", "generate_modality"]

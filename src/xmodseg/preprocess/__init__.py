"""Preprocessing: canonical orientation, physical-space resampling, cropping, normalisation, slice cache."""

from xmodseg.preprocess.pipeline import PreprocessConfig, preprocess_modality

__all__ = ["PreprocessConfig", "preprocess_modality"]

"""xmodseg: cross-modality medical image segmentation pipeline (MR <-> CT) with domain adaptation."""

__version__ = "0.1.0"

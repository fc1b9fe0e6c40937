"""Import CaDIS (cataract-surgery video frames, Grammatikopoulou et al. 2021): one case per frame.

The release holds `Video01/Images/Video1_frame000090.png` (RGB, 960 x 540) and
`Video01/Labels/Video1_frame000090.png` (one grey value per pixel: class ids 0-35). A registry
case id is the frame's file stem (`Video1_frame000090`), from which the video folder follows
(`Video01`: two digits), so the thousands of frames need no layout in the registry; the official
video-level split lives in the registry's case lists. Frames and labels go through the shared
checked import (`nifti_folder.import_cases`): every file exists before anything is read, pixel
values must be in the registry's label mapping, and nothing takes its final name before every frame
has passed. Each frame is written as a one-slice volume with its 3 channels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from xmodseg.datasets.nifti_folder import import_cases
from xmodseg.errors import InputDataError
from xmodseg.registry import DatasetSpec

FRAME_ID = re.compile(r"Video(\d+)_frame\d+")
LAYOUT = {"image": "Video<NN>/Images/<case>.png", "label": "Video<NN>/Labels/<case>.png"}


def video_of(case: str) -> int:
    """`Video12_frame017650` -> 12."""
    m = FRAME_ID.fullmatch(case)
    if m is None:
        raise InputDataError(f"CaDIS case id '{case}' must look like Video1_frame000090 (the frame's file name without .png)")
    return int(m.group(1))


def frame_paths(folder: Path, case: str) -> tuple[Path, Path]:
    """The image and label PNG of one frame below the release folder (the one holding Video01...)."""
    video = folder / f"Video{video_of(case):02d}"
    return video / "Images" / f"{case}.png", video / "Labels" / f"{case}.png"


def import_cadis(spec: DatasetSpec, modality: str, source_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Import every registry frame of `modality` from a CaDIS folder (Video01 ... Video25 inside)."""
    src = Path(source_dir)
    if src.is_dir() and not any(src.glob("Video[0-9]*")):
        raise InputDataError(f"{src}: no Video01 ... Video25 folders here; set data_path to the CaDIS folder that holds them")
    return import_cases(spec, modality, src, frame_paths, LAYOUT)

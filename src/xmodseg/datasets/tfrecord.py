"""The SIFA / PnP-AdaNet preprocessed slices (`*.tfrecords`) read without TensorFlow.

A TFRecord file is a sequence of records: uint64 length, uint32 masked CRC-32C of the length, the
payload, uint32 masked CRC-32C of the payload. Each payload is a `tf.train.Example` protobuf whose
features are `dsize_dim0..2` / `lsize_dim0..2` (int64) and `data_vol` / `label_vol` (raw float32
bytes of a [256, 256, 3] array, C order; the released files carry the same label slice in all 3
label channels). SIFA's reader (data_loader.py) feeds the network channel 1 (the middle slice) of
the image and one-hot encodes channel 1 of the label with depth 5: values 0 bg, 1 MYO, 2 LAC,
3 LVC, 4 AA, and the release's value 5 (about 4 % of the pixels) becomes an all-zero vector, i.e.
no class. Here 5 becomes `labels.IGNORE_INDEX`, which every loss excludes.
Both CRCs are checked (the `crc32c` package, in C): the length CRC catches truncated or misaligned
files, the payload CRC a flipped byte inside a record, which the archive's sha256 cannot see in a
file the user supplies or edits after extraction.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import crc32c
import numpy as np

from xmodseg.atomic import atomic_dir, save_npy, write_json
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file
from xmodseg.labels import IGNORE_INDEX

log = logging.getLogger(__name__)

SIFA_CLASSES = ["background", "MYO", "LAC", "LVC", "AA"]
SIFA_NO_CLASS = 5  # the release's label value outside SIFA's 5 one-hot classes
# x' = ((x - a) / (b - a)) * 2 - 1, no clipping: SIFA's constants for its z-scored data (methods.md 2.7)
SIFA_INTENSITY = {"mr": (-1.8, 4.4), "ct": (-2.8, 3.2)}
SIFA_FORMULA = "((x - a) / (b - a)) * 2 - 1"
# The precision SIFA evaluates the formula in: data_loader.py in float32 (TF ops on the decoded
# float32 slices, Python constants as float32 tensors); evaluate.py in float64 (numpy on a float64
# batch), rounded to float32 when fed to the network.
TRAIN_PRECISION = "float32"
TEST_PRECISION = "float64"
# The manifest's `intensity_space` of caches already in SIFA's [-1, 1] (models must not refit or clamp it)
SIFA_UNIT_SPACE = "sifa_unit"


def masked_crc(data: bytes) -> int:
    """TensorFlow's masked CRC-32C (rotated and offset so a CRC of CRCs is not trivially zero)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The payloads of a TFRecord file; a truncated or corrupt framing raises naming the file."""
    p = Path(path)
    with open(p, "rb") as fh:
        index = 0
        while header := fh.read(12):
            if len(header) < 12:
                raise InputDataError(f"{p}: truncated record header (record {index})")
            (length,), (crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if masked_crc(header[:8]) != crc:
                raise InputDataError(f"{p}: record {index} length CRC mismatch (not a TFRecord file, or corrupt)")
            payload = fh.read(length)
            footer = fh.read(4)
            if len(payload) < length or len(footer) < 4:
                raise InputDataError(f"{p}: record {index} truncated ({len(payload)} of {length} bytes)")
            if masked_crc(payload) != struct.unpack("<I", footer)[0]:
                raise InputDataError(f"{p}: record {index} payload CRC-32C mismatch (corrupt file: fetch or copy it again)")
            yield payload
            index += 1


# ---- minimal protobuf wire-format decoding of tf.train.Example -----------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            yield field, wire, buf[pos : pos + n]
            pos += n
        elif wire == 5:
            yield field, wire, buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            yield field, wire, buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _feature_value(buf: bytes) -> list[bytes] | list[int] | list[float]:
    for kind, _, lst in _fields(buf):  # Feature: 1 bytes_list, 2 float_list, 3 int64_list
        assert isinstance(lst, bytes)
        # the casts state the wire format: varints (wire 0) are ints, everything else bytes
        if kind == 1:
            return [cast(bytes, v) for _, _, v in _fields(lst)]
        if kind == 2:
            out: list[float] = []
            for _, wire, v in _fields(lst):
                raw = cast(bytes, v)
                out += list(np.frombuffer(raw, "<f4")) if wire == 2 else [struct.unpack("<f", raw)[0]]
            return out
        if kind == 3:
            ints: list[int] = []
            for _, wire, v in _fields(lst):
                if wire == 2:
                    packed = cast(bytes, v)
                    p = 0
                    while p < len(packed):
                        x, p = _varint(packed, p)
                        ints.append(x - (1 << 64) if x >= 1 << 63 else x)
                else:
                    x = cast(int, v)
                    ints.append(x - (1 << 64) if x >= 1 << 63 else x)
            return ints
    return []


def parse_example(payload: bytes) -> dict[str, list]:
    """{feature name: values} of a serialized tf.train.Example."""
    features: dict[str, list] = {}
    for field, _, features_msg in _fields(payload):
        if field != 1:
            continue
        for _, _, entry in _fields(cast(bytes, features_msg)):
            key, value = "", b""
            for f, _, v in _fields(cast(bytes, entry)):
                if f == 1:
                    key = cast(bytes, v).decode()
                elif f == 2:
                    value = cast(bytes, v)
            features[key] = _feature_value(value)
    return features


@dataclass(frozen=True)
class SifaSlice:
    image: np.ndarray  # [3, H, W] float32: the three consecutive slices
    label: np.ndarray  # [H, W] uint8: the middle label channel, 0..4, IGNORE_INDEX where the release has 5


def decode_sifa_example(payload: bytes, source: str = "<record>") -> SifaSlice:
    f = parse_example(payload)
    try:
        dshape = [int(f[f"dsize_dim{i}"][0]) for i in range(3)]
        data, label = f["data_vol"][0], f["label_vol"][0]
    except (KeyError, IndexError):
        raise InputDataError(f"{source}: not a SIFA/PnP-AdaNet slice record (features {sorted(f)})") from None
    image = np.frombuffer(data, "<f4")
    if image.size != int(np.prod(dshape)):
        raise InputDataError(f"{source}: data_vol has {image.size} values, dsize says {dshape}")
    image = image.reshape(dshape)  # [H, W, 3]
    lab = np.frombuffer(label, "<f4")
    h, w = dshape[:2]
    if lab.size == h * w * 3:  # the released files: 3 label channels, the middle one is used
        lab2d = lab.reshape(h, w, 3)[:, :, 1]
    elif lab.size == h * w:
        lab2d = lab.reshape(h, w)
    else:
        raise InputDataError(f"{source}: label_vol has {lab.size} values for a {h}x{w} slice")
    values = np.unique(lab2d)
    bad = values[~np.isin(values, np.arange(SIFA_NO_CLASS + 1))]
    if bad.size:
        raise InputDataError(f"{source}: label values {bad[:10].tolist()} outside 0..{SIFA_NO_CLASS} (0..4 classes, {SIFA_NO_CLASS} no class)")
    out = lab2d.astype(np.uint8)
    out[lab2d == SIFA_NO_CLASS] = IGNORE_INDEX
    return SifaSlice(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32), out)


def read_sifa_slices(files: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, SifaSlice]]:
    for path in files:
        for i, payload in enumerate(read_records(path)):
            yield str(path), decode_sifa_example(payload, f"{path} record {i}")


def sifa_unit_range(image: np.ndarray, kind: str, precision: str = TRAIN_PRECISION) -> np.ndarray:
    """SIFA's fixed mapping to [-1, 1], one operation at a time in `precision` as SIFA does it
    (TRAIN_PRECISION for the tfrecords, TEST_PRECISION for the test volumes), as float32.

    Each step is rounded to `precision`, `b - a` included, so the result is SIFA's bit for bit;
    one shared function keeps training and test inputs on the same scale.
    """
    if kind not in SIFA_INTENSITY:
        raise InputDataError(f"modality kind '{kind}': SIFA's intensity constants exist for {sorted(SIFA_INTENSITY)}")
    dt = np.dtype(precision)
    a, b = (dt.type(v) for v in SIFA_INTENSITY[kind])
    x = np.subtract(np.asarray(image, dtype=dt), a)
    x = np.divide(x, np.subtract(b, a))
    x = np.multiply(x, dt.type(2.0))
    return np.subtract(x, dt.type(1.0)).astype(np.float32)


def intensity_record(kind: str) -> dict[str, Any]:
    """The manifest's `intensity` block of a cache in SIFA's unit space."""
    a, b = SIFA_INTENSITY[kind]
    return {"mode": "sifa_fixed", "a": a, "b": b, "formula": SIFA_FORMULA, "precision": {"train": TRAIN_PRECISION, "test": TEST_PRECISION}}


def write_training_cases(
    files: Sequence[str | os.PathLike[str]], kind: str, folder: Path, slices_per_case: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Decode the tfrecords as SIFA's reader does (middle image channel, float32 mapping, label 5
    -> IGNORE_INDEX) into training pseudo-cases of `slices_per_case` slices in `folder`.

    Returns the case records and, per file, the number of ignored (no class) pixels.
    The files carry no subject ids; the groups only matter for bookkeeping: all are training data.
    """
    records: list[dict[str, Any]] = []
    ignored: dict[str, int] = {}
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    def flush() -> None:
        case = f"tf{len(records):03d}"
        img, lab = np.stack(images), np.stack(labels)
        records.append(write_cached_case(folder, case, "train", img, lab, {}))
        images.clear()
        labels.clear()

    for path in files:
        n = 0
        for i, payload in enumerate(read_records(path)):
            s = decode_sifa_example(payload, f"{path} record {i}")
            images.append(sifa_unit_range(s.image[1], kind, TRAIN_PRECISION))
            labels.append(s.label)
            n += int(np.count_nonzero(s.label == IGNORE_INDEX))
            if len(images) == slices_per_case:
                flush()
        ignored[str(path)] = n
        log.info("%s: %d pixels of label %d (no class) cached as %d (ignored by the losses)", path, n, SIFA_NO_CLASS, IGNORE_INDEX)
    if images:
        flush()
    if not records:
        raise InputDataError(f"no records in {len(files)} tfrecord files")
    return records, ignored


def write_cached_case(folder: Path, case: str, split: str, image: np.ndarray, label: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
    save_npy(folder / f"{case}_image.npy", np.ascontiguousarray(image, dtype=np.float32))
    save_npy(folder / f"{case}_label.npy", np.ascontiguousarray(label, dtype=np.uint8))
    values = np.unique(label)
    return {
        "case": case,
        "split": split,
        **extra,
        "image": f"{case}_image.npy",
        "label": f"{case}_label.npy",
        "shape": list(image.shape),
        "image_sha256": sha256_file(folder / f"{case}_image.npy"),
        "label_sha256": sha256_file(folder / f"{case}_label.npy"),
        "classes_present": sorted(int(v) for v in values if v != IGNORE_INDEX),
        "ignored_pixels": int(np.count_nonzero(label == IGNORE_INDEX)),
    }


def ignored_record(ignored: dict[str, int]) -> dict[str, Any]:
    """Manifest keys for the training pixels without a class."""
    return {"ignore_index": IGNORE_INDEX, "ignored_pixels": ignored, "ignored_pixels_total": int(sum(ignored.values()))}


def tfrecords_to_cache(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    dataset: str,
    modality: str,
    slices_per_case: int = 600,
) -> dict:
    """Write the slices exactly as SIFA's reader decodes them as a training-only slice cache.

    The files carry no subject ids; consecutive groups of `slices_per_case` slices (600 per case in
    the release) become pseudo-cases, which only matters for bookkeeping: all are training data.
    """
    if modality not in SIFA_INTENSITY:
        raise InputDataError(f"modality '{modality}': SIFA's tfrecords exist for {sorted(SIFA_INTENSITY)}")
    if not files:
        raise InputDataError("no tfrecord files given")
    with atomic_dir(out) as tmp:
        cases, ignored = write_training_cases(files, modality, tmp, slices_per_case)
        manifest = {
            "format": 1,
            "dataset": dataset,
            "modality": modality,
            "kind": modality,
            "class_names": SIFA_CLASSES,
            "slice_axis": "coronal",
            "source": {"kind": "sifa_tfrecords", "files": [str(f) for f in files], "sha256": {str(f): sha256_file(f) for f in files}},
            "intensity_space": SIFA_UNIT_SPACE,
            "intensity": intensity_record(modality),
            **ignored_record(ignored),
            "cases": cases,
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest

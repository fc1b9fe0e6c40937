"""The SIFA / PnP-AdaNet preprocessed slices (`*.tfrecords`) read without TensorFlow.

A TFRecord file is a sequence of records: uint64 length, uint32 masked CRC-32C of the length, the
payload, uint32 masked CRC-32C of the payload. Each payload is a `tf.train.Example` protobuf whose
features are `dsize_dim0..2` / `lsize_dim0..2` (int64) and `data_vol` / `label_vol` (raw float32
bytes of a [256, 256, 3] array, C order). The readers of both papers take the image's 3 slices and
channel 1 (the middle slice) of the label; label values are 0 bg, 1 MYO, 2 LAC, 3 LVC, 4 AA.
The length CRC is checked (it catches truncated or misaligned files); the payload CRC is not,
because a pure-Python CRC-32C costs about a second per slice and the archive's sha256 already
guarantees the bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodseg.atomic import atomic_dir, save_npy, write_json
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file

SIFA_CLASSES = ["background", "MYO", "LAC", "LVC", "AA"]
# x' = 2 (x - a) / (b - a) - 1, no clipping: SIFA's constants for its z-scored tfrecords (methods.md 2.7)
SIFA_INTENSITY = {"mr": (-1.8, 4.4), "ct": (-2.8, 3.2)}

_CRC_TABLE: list[int] = []


def _crc32c(data: bytes) -> int:
    if not _CRC_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
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
            if len(payload) < length or len(fh.read(4)) < 4:
                raise InputDataError(f"{p}: record {index} truncated ({len(payload)} of {length} bytes)")
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
        if kind == 1:
            return [v for _, _, v in _fields(lst)]  # type: ignore[misc]
        if kind == 2:
            out: list[float] = []
            for _, wire, v in _fields(lst):
                out += list(np.frombuffer(v, "<f4")) if wire == 2 else [struct.unpack("<f", v)[0]]  # type: ignore[arg-type]
            return out
        if kind == 3:
            ints: list[int] = []
            for _, wire, v in _fields(lst):
                if wire == 2:
                    p = 0
                    while p < len(v):  # type: ignore[arg-type]
                        x, p = _varint(v, p)  # type: ignore[arg-type]
                        ints.append(x - (1 << 64) if x >= 1 << 63 else x)
                else:
                    ints.append(v - (1 << 64) if v >= 1 << 63 else v)  # type: ignore[operator]
            return ints
    return []


def parse_example(payload: bytes) -> dict[str, list]:
    """{feature name: values} of a serialized tf.train.Example."""
    features: dict[str, list] = {}
    for field, _, features_msg in _fields(payload):
        if field != 1:
            continue
        for _, _, entry in _fields(features_msg):  # type: ignore[arg-type]
            key, value = "", b""
            for f, _, v in _fields(entry):  # type: ignore[arg-type]
                if f == 1:
                    key = v.decode()  # type: ignore[union-attr]
                elif f == 2:
                    value = v  # type: ignore[assignment]
            features[key] = _feature_value(value)  # type: ignore[arg-type]
    return features


@dataclass(frozen=True)
class SifaSlice:
    image: np.ndarray  # [3, H, W] float32: the three consecutive slices
    label: np.ndarray  # [H, W] uint8: the middle slice's labels (0..4)


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
    if not np.all(np.isin(values, np.arange(len(SIFA_CLASSES)))):
        raise InputDataError(f"{source}: label values {values[~np.isin(values, np.arange(5))][:10].tolist()} outside 0..4")
    return SifaSlice(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32), lab2d.astype(np.uint8))


def read_sifa_slices(files: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, SifaSlice]]:
    for path in files:
        for i, payload in enumerate(read_records(path)):
            yield str(path), decode_sifa_example(payload, f"{path} record {i}")


def sifa_to_unit_range(image: np.ndarray, modality: str) -> np.ndarray:
    a, b = SIFA_INTENSITY[modality]
    return (2.0 * (image - a) / (b - a) - 1.0).astype(np.float32)


def tfrecords_to_cache(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    dataset: str,
    modality: str,
    slices_per_case: int = 600,
) -> dict:
    """Write the slices (middle channel, SIFA's [-1, 1] mapping) as a training-only slice cache.

    The files carry no subject ids; consecutive groups of `slices_per_case` slices (600 per case in
    the release) become pseudo-cases, which only matters for bookkeeping: all are training data.
    """
    if modality not in SIFA_INTENSITY:
        raise InputDataError(f"modality '{modality}': SIFA's tfrecords exist for {sorted(SIFA_INTENSITY)}")
    images, labels = [], []
    for _, s in read_sifa_slices(files):
        images.append(sifa_to_unit_range(s.image[1], modality))
        labels.append(s.label)
    if not images:
        raise InputDataError(f"no records in {len(files)} tfrecord files")
    img, lab = np.stack(images), np.stack(labels)
    cases = []
    with atomic_dir(out) as tmp:
        for k, start in enumerate(range(0, len(img), slices_per_case)):
            case = f"tf{k:03d}"
            save_npy(tmp / f"{case}_image.npy", img[start : start + slices_per_case])
            save_npy(tmp / f"{case}_label.npy", lab[start : start + slices_per_case])
            cases.append(
                {
                    "case": case,
                    "split": "train",
                    "image": f"{case}_image.npy",
                    "label": f"{case}_label.npy",
                    "shape": list(img[start : start + slices_per_case].shape),
                    "image_sha256": sha256_file(tmp / f"{case}_image.npy"),
                    "label_sha256": sha256_file(tmp / f"{case}_label.npy"),
                    "classes_present": sorted(int(v) for v in np.unique(lab[start : start + slices_per_case])),
                }
            )
        manifest = {
            "format": 1,
            "dataset": dataset,
            "modality": modality,
            "kind": modality,
            "class_names": SIFA_CLASSES,
            "slice_axis": "coronal",
            "source": {"kind": "sifa_tfrecords", "files": [str(f) for f in files], "sha256": {str(f): sha256_file(f) for f in files}},
            "intensity": {"mapping": "2 (x - a) / (b - a) - 1", "a_b": SIFA_INTENSITY[modality]},
            "cases": cases,
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest

"""SIFA/PnP-AdaNet tfrecords written here in the documented layout decode without TensorFlow."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from xmodseg.datasets.tfrecord import decode_sifa_example, masked_crc, parse_example, read_records, tfrecords_to_cache
from xmodseg.errors import InputDataError
from xmodseg.slices import training_slices


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:  # length-delimited field
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _int64_feature(v: int) -> bytes:
    return _ld(3, _ld(1, _varint(v)))  # Feature.int64_list(Int64List packed value)


def _bytes_feature(b: bytes) -> bytes:
    return _ld(1, _ld(1, b))  # Feature.bytes_list(BytesList value)


def example(image_hwc: np.ndarray, label_hwc: np.ndarray) -> bytes:
    feats = {f"dsize_dim{i}": _int64_feature(d) for i, d in enumerate(image_hwc.shape)}
    feats.update({f"lsize_dim{i}": _int64_feature(d) for i, d in enumerate((*label_hwc.shape[:2], 1))})
    feats["data_vol"] = _bytes_feature(image_hwc.astype("<f4").tobytes())
    feats["label_vol"] = _bytes_feature(label_hwc.astype("<f4").tobytes())
    entries = b"".join(_ld(1, _ld(1, k.encode()) + _ld(2, v)) for k, v in feats.items())
    return _ld(1, entries)


def write_tfrecord(path: Path, payloads: list[bytes]) -> Path:
    with open(path, "wb") as fh:
        for p in payloads:
            length = struct.pack("<Q", len(p))
            fh.write(length + struct.pack("<I", masked_crc(length)) + p + struct.pack("<I", masked_crc(p)))
    return path


def slices(rng, n=3, size=16):
    out = []
    for _ in range(n):
        img = rng.normal(size=(size, size, 3)).astype(np.float32)
        lab = np.zeros((size, size, 3), np.float32)
        lab[4:8, 4:8, 1] = rng.integers(1, 5)
        lab[:, :, 0] = 7  # channels 0 and 2 are not read
        out.append((img, lab))
    return out


def test_crc_is_crc32c_masked_as_tensorflow_does():
    assert masked_crc(b"123456789") == (((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # CRC-32C check value


def test_decode_gives_the_written_arrays(tmp_path):
    rng = np.random.default_rng(0)
    data = slices(rng)
    path = write_tfrecord(tmp_path / "slice0001.tfrecords", [example(i, l) for i, l in data])
    records = list(read_records(path))
    assert len(records) == 3
    f = parse_example(records[0])
    assert f["dsize_dim0"] == [16] and f["dsize_dim2"] == [3] and f["lsize_dim2"] == [1]
    for payload, (img, lab) in zip(records, data, strict=True):
        s = decode_sifa_example(payload)
        np.testing.assert_array_equal(s.image, np.moveaxis(img, -1, 0))
        np.testing.assert_array_equal(s.label, lab[:, :, 1].astype(np.uint8))


def test_corrupt_or_foreign_files_are_named(tmp_path):
    rng = np.random.default_rng(1)
    good = write_tfrecord(tmp_path / "a.tfrecords", [example(*slices(rng, 1)[0])])
    cut = tmp_path / "cut.tfrecords"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(InputDataError, match="cut.tfrecords.*truncated"):
        list(read_records(cut))
    junk = tmp_path / "junk.tfrecords"
    junk.write_bytes(b"not a tfrecord file at all")
    with pytest.raises(InputDataError, match="junk.tfrecords.*CRC"):
        list(read_records(junk))
    img, lab = slices(rng, 1)[0]
    lab[0, 0, 1] = 9
    bad = write_tfrecord(tmp_path / "bad.tfrecords", [example(img, lab)])
    with pytest.raises(InputDataError, match=r"outside 0\.\.4"):
        decode_sifa_example(next(read_records(bad)), str(bad))


def test_tfrecords_become_a_training_cache(tmp_path):
    rng = np.random.default_rng(2)
    files = [write_tfrecord(tmp_path / f"slice{i:04d}.tfrecords", [example(*s) for s in slices(rng, 2)]) for i in range(3)]
    manifest = tfrecords_to_cache(files, tmp_path / "cache", dataset="mmwhs_sifa", modality="ct", slices_per_case=4)
    assert [c["case"] for c in manifest["cases"]] == ["tf000", "tf001"] and [c["shape"][0] for c in manifest["cases"]] == [4, 2]
    s = training_slices(tmp_path / "cache", with_labels=True)
    assert tuple(s.images.shape) == (6, 1, 16, 16) and int(s.labels.max()) <= 4
    first = next(read_records(files[0]))
    expected = 2 * (decode_sifa_example(first).image[1] + 2.8) / 6.0 - 1  # SIFA's CT constants
    np.testing.assert_allclose(s.images[0, 0].numpy(), expected, rtol=1e-6)


def test_sifa_release_cache_maps_back_onto_the_released_volumes(tmp_path):
    """Training slices from tfrecords; test volumes flipped as SIFA's evaluate.py does, with the
    flip in the cached geometry so predictions map back voxel for voxel."""
    import SimpleITK as sitk

    from xmodseg.datasets.sifa_release import build_cache
    from xmodseg.inference import to_original_grid
    from xmodseg.registry import dataset_from_config

    rng = np.random.default_rng(3)
    files = [write_tfrecord(tmp_path / f"slice{i}.tfrecords", [example(*s) for s in slices(rng, 2)]) for i in range(2)]
    spec = dataset_from_config(
        "rel",
        {
            "root": str(tmp_path / "raw"),
            "source": {"kind": "sifa_release"},
            "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {i: i for i in range(5)}},
            "modalities": {"ct": {"kind": "ct", "image": "{case}_image.nii.gz", "label": "{case}_label.nii.gz", "cases": [1003], "test": [1003]}},
        },
    )
    vol = rng.normal(size=(5, 12, 10)).astype(np.float32)  # z, y, x
    lab = rng.integers(0, 5, size=vol.shape).astype(np.uint8)
    for arr, path in ((vol, spec.image_path("ct", "1003")), (lab, spec.label_path("ct", "1003"))):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.9, 1.1, 1.3))
        img.SetOrigin((10.0, -20.0, 30.0))
        img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(path))
    out = build_cache(spec, "ct", files, tmp_path / "cache", slices_per_case=3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(c["case"], c["split"]) for c in manifest["cases"]] == [("tf000", "train"), ("tf001", "train"), ("1003", "test")]
    rec = manifest["cases"][-1]
    cached_label = np.load(out / rec["label"])
    np.testing.assert_array_equal(cached_label, lab[:, ::-1, ::-1])  # SIFA's flip of x and y
    np.testing.assert_allclose(np.load(out / rec["image"]), 2 * (vol[:, ::-1, ::-1] + 2.8) / 6.0 - 1, rtol=1e-6)
    back = to_original_grid(cached_label, rec, manifest["slice_axis"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), lab)  # exact voxel-for-voxel inverse
    ref = sitk.ReadImage(str(spec.label_path("ct", "1003")))
    assert back.GetOrigin() == pytest.approx(ref.GetOrigin()) and back.GetDirection() == pytest.approx(ref.GetDirection())

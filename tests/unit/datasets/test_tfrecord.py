"""SIFA/PnP-AdaNet tfrecords written here in the release's layout decode without TensorFlow, to
exactly what SIFA's data_loader.py feeds its network."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from xmodseg.datasets.tfrecord import decode_sifa_example, masked_crc, parse_example, read_records, tfrecords_to_cache
from xmodseg.errors import InputDataError
from xmodseg.labels import IGNORE_INDEX
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
    feats.update({f"lsize_dim{i}": _int64_feature(d) for i, d in enumerate(label_hwc.shape)})  # the release says 3
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


def release_slices(rng, n=3, size=16):
    """As in the release: one label slice repeated in all 3 channels, values 0..5 (5 is no class)."""
    out = []
    for _ in range(n):
        img = (rng.normal(size=(size, size, 3)) * 1.5).astype(np.float32)
        lab = rng.integers(0, 6, size=(size, size)).astype(np.float32)
        out.append((img, np.repeat(lab[:, :, None], 3, axis=2)))
    return out


def _f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def sifa_reference(data_vol: bytes, label_vol: bytes, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """SIFA's data_loader.py redone independently: float32 [256, 256, 3] (here 16) arrays, channel 1,
    `((x - a) / (b - a)) * 2 - 1` one float32 TF op at a time (each computed in float64 and rounded,
    which is exact for + - * /), and the depth-5 one-hot of the label: an all-zero vector is no class."""
    x = np.frombuffer(data_vol, "<f4").reshape(16, 16, 3)[:, :, 1].astype(np.float64)
    denom = _f32(_f32(b) - _f32(a))
    y = _f32(_f32(_f32(_f32(x - _f32(a)) / denom) * 2.0) - 1.0).astype(np.float32)
    lab = np.frombuffer(label_vol, "<f4").reshape(16, 16, 3)[:, :, 1].astype(np.uint8)
    one_hot = (lab[..., None] == np.arange(5)).astype(np.float32)
    return y, np.where(one_hot.sum(-1) == 0, IGNORE_INDEX, one_hot.argmax(-1)).astype(np.uint8)


def test_crc_is_crc32c_masked_as_tensorflow_does():
    assert masked_crc(b"123456789") == (((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # CRC-32C check value


def test_decode_gives_the_written_arrays(tmp_path):
    rng = np.random.default_rng(0)
    data = slices(rng)
    path = write_tfrecord(tmp_path / "slice0001.tfrecords", [example(i, lab) for i, lab in data])
    records = list(read_records(path))
    assert len(records) == 3
    f = parse_example(records[0])
    assert f["dsize_dim0"] == [16] and f["dsize_dim2"] == [3] and f["lsize_dim2"] == [3]
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
    for value in (9, 6, 2.5, -1):  # 5 is the release's "no class"; anything else is an error
        lab[0, 0, 1] = value
        bad = write_tfrecord(tmp_path / "bad.tfrecords", [example(*slices(rng, 1)[0]), example(img, lab)])
        with pytest.raises(InputDataError, match=rf"bad.tfrecords record 1: label values \[{float(value)}\] outside 0\.\.5"):
            tfrecords_to_cache([bad], tmp_path / "never", dataset="x", modality="ct")
    assert not (tmp_path / "never").exists()


def test_label_5_is_no_class_and_counted(tmp_path, caplog):
    """The release's label 5 (SIFA's one-hot: no class) becomes IGNORE_INDEX, counted per file."""
    rng = np.random.default_rng(4)
    data = [release_slices(rng, 2), release_slices(rng, 3)]
    files = [write_tfrecord(tmp_path / f"ct_{i}.tfrecords", [example(*s) for s in d]) for i, d in enumerate(data)]
    with caplog.at_level("INFO", logger="xmodseg.datasets.tfrecord"):
        manifest = tfrecords_to_cache(files, tmp_path / "cache", dataset="mmwhs_sifa", modality="ct", slices_per_case=4)
    fives = [int(sum((lab[:, :, 1] == 5).sum() for _, lab in d)) for d in data]
    assert min(fives) > 0
    assert manifest["ignored_pixels"] == {str(f): n for f, n in zip(files, fives, strict=True)}
    assert manifest["ignored_pixels_total"] == sum(fives) and manifest["ignore_index"] == IGNORE_INDEX
    assert [r.getMessage() for r in caplog.records if "no class" in r.getMessage()] == [
        f"{f}: {n} pixels of label 5 (no class) cached as 255 (ignored by the losses)" for f, n in zip(files, fives, strict=True)
    ]
    labels = np.concatenate([np.load(tmp_path / "cache" / c["label"]) for c in manifest["cases"]])
    expected = np.stack([np.where(lab[:, :, 1] == 5, 255, lab[:, :, 1]) for d in data for _, lab in d])
    np.testing.assert_array_equal(labels, expected)
    assert [c["ignored_pixels"] for c in manifest["cases"]] == [int((expected[:4] == 255).sum()), int((expected[4:] == 255).sum())]
    assert all(255 not in c["classes_present"] for c in manifest["cases"])


@pytest.mark.parametrize("modality", ["mr", "ct"])
def test_cache_is_sifa_decoding_bit_for_bit(tmp_path, modality):
    """Release-format records (3 label channels with 5s, lsize 3) against an independent redo of
    SIFA's reader: image channel 1 in float32 op order, label channel 1 one-hot with depth 5."""
    from xmodseg.datasets.tfrecord import SIFA_INTENSITY

    rng = np.random.default_rng(5)
    data = release_slices(rng, 4)
    data[0][1][:, :, 0] = 0  # only channel 1 of the label is read, as SIFA does
    path = write_tfrecord(tmp_path / f"{modality}.tfrecords", [example(*s) for s in data])
    manifest = tfrecords_to_cache([path], tmp_path / "cache", dataset="x", modality=modality)
    assert manifest["intensity_space"] == "sifa_unit"
    assert manifest["intensity"]["mode"] == "sifa_fixed" and (manifest["intensity"]["a"], manifest["intensity"]["b"]) == SIFA_INTENSITY[modality]
    images, labels = np.load(tmp_path / "cache" / "tf000_image.npy"), np.load(tmp_path / "cache" / "tf000_label.npy")
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    for k, payload in enumerate(read_records(path)):
        f = parse_example(payload)
        assert f["lsize_dim2"] == [3]
        img, lab = sifa_reference(f["data_vol"][0], f["label_vol"][0], *SIFA_INTENSITY[modality])
        np.testing.assert_array_equal(images[k].view(np.uint32), img.view(np.uint32))  # bit for bit
        np.testing.assert_array_equal(labels[k], lab)


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
    """Training slices from tfrecords; test slices as SIFA's evaluate.py makes them (medpy's [x, y, z]
    array flipped on axes 0 and 1, slice [..., k] indexed [x, y]: SimpleITK's arr[k, ::-1, ::-1].T),
    with that transform in the cached geometry so predictions map back voxel for voxel.
    tests/unit/datasets/test_release_orientation.py checks the same against medpy itself."""
    import SimpleITK as sitk

    from xmodseg.datasets.sifa_release import build_cache
    from xmodseg.evaluation.inference import to_original_grid
    from xmodseg.registry import dataset_from_config

    rng = np.random.default_rng(3)
    files = [write_tfrecord(tmp_path / f"slice{i}.tfrecords", [example(*s) for s in release_slices(rng, 2)]) for i in range(2)]
    spec = dataset_from_config(
        "rel",
        {
            "root": str(tmp_path / "raw"),
            "source": {"kind": "sifa_release"},
            "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {i: i for i in range(5)}, "ignore": [5]},
            "modalities": {"ct": {"kind": "ct", "image": "{case}_image.nii.gz", "label": "{case}_label.nii.gz", "cases": [1003], "test": [1003]}},
        },
    )
    vol = rng.normal(size=(5, 12, 10)).astype(np.float32)  # z, y, x
    lab = rng.integers(0, 6, size=vol.shape).astype(np.uint8)  # with the release's 5
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
    assert manifest["intensity_space"] == "sifa_unit" and manifest["ignored_pixels_total"] > 0
    rec = manifest["cases"][-1]
    assert rec["ignored_label_voxels"] == int((lab == 5).sum()) > 0 and manifest["test_ignored_label_voxels"] == {"1003": rec["ignored_label_voxels"]}
    cached_label = np.load(out / rec["label"])
    as_background = np.where(lab == 5, 0, lab)  # evaluate.py: 5 is "not class c" for every c
    np.testing.assert_array_equal(cached_label, np.transpose(as_background[:, ::-1, ::-1], (0, 2, 1)))
    assert cached_label.shape == (5, 10, 12)
    np.testing.assert_allclose(np.load(out / rec["image"]), 2 * (np.transpose(vol[:, ::-1, ::-1], (0, 2, 1)) + 2.8) / 6.0 - 1, atol=1e-6)
    back = to_original_grid(cached_label, rec, manifest["slice_axis"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), as_background)  # exact voxel-for-voxel inverse
    ref = sitk.ReadImage(str(spec.label_path("ct", "1003")))
    assert back.GetOrigin() == pytest.approx(ref.GetOrigin()) and back.GetDirection() == pytest.approx(ref.GetDirection())

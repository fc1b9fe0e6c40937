"""The embedded synthetic MR/CT cardiac phantom: determinism, geometry, labels, appearance, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from xmodseg.errors import ConfigError
from xmodseg.imageio import read_image, same_geometry
from xmodseg.registry import dataset_from_config
from xmodseg.synth import PhantomParams, generate_case, generate_modality
from xmodseg.synth.anatomy import tissue_at
from xmodseg.synth.generate import GENERATOR_VERSION, case_rng, simulate_case
from xmodseg.synth.tissues import Tissue

RAW = {0, 205, 420, 500, 820}
FOREGROUND = (205, 420, 500, 820)

# Coarse grids keep the whole file fast; the anatomy is the same as at default resolution.
SMALL = {
    "ct_spacing_mm": [2.0, 2.0, 2.0],
    "ct_fov_mm": [170.0, 170.0, 160.0],
    "mr_spacing_mm": [2.5, 2.5, 6.0],
    "mr_fov_mm": [190.0, 180.0, 168.0],
}


@pytest.fixture(scope="module")
def small() -> PhantomParams:
    return PhantomParams.from_overrides(SMALL)


@pytest.fixture(scope="module")
def cases(small: PhantomParams):
    """Case 1001 of each modality (seed 2026), as the data-set generator would draw them."""
    return {kind: simulate_case(kind, case_rng(2026, kind, "1001"), small) for kind in ("mr", "ct")}


def _arrays(image: sitk.Image, label: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)


def _mean(case, tissue: Tissue) -> float:
    img = sitk.GetArrayViewFromImage(case.image)
    mask = case.tissue == tissue
    assert mask.sum() > 20, f"too few {tissue.name} voxels to compare"
    return float(img[mask].mean())


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_same_seed_gives_identical_case(kind: str, small: PhantomParams) -> None:
    a = generate_case(kind, np.random.default_rng([7, 1, 1001]), small)
    b = generate_case(kind, np.random.default_rng([7, 1, 1001]), small)
    for x, y in zip(_arrays(*a), _arrays(*b)):
        np.testing.assert_array_equal(x, y)
    assert same_geometry(a[0], b[0])


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_different_case_gives_different_anatomy(kind: str, small: PhantomParams) -> None:
    a = simulate_case(kind, case_rng(2026, kind, "1001"), small)
    b = simulate_case(kind, case_rng(2026, kind, "1002"), small)
    assert not np.allclose(a.anatomy.heart_center, b.anatomy.heart_center)
    lv_a = (sitk.GetArrayViewFromImage(a.label) == 500).sum()
    lv_b = (sitk.GetArrayViewFromImage(b.label) == 500).sum()
    assert lv_a != lv_b


def test_mr_and_ct_subjects_are_unpaired(cases) -> None:
    """MR case 1001 and CT case 1001 are different subjects: different LV cavity volume (mm^3)."""
    vols = {}
    for kind, case in cases.items():
        voxel = float(np.prod(case.image.GetSpacing()))
        vols[kind] = float((sitk.GetArrayViewFromImage(case.label) == 500).sum()) * voxel
    assert abs(vols["mr"] - vols["ct"]) > 0.01 * max(vols.values()), vols
    assert not np.allclose(cases["mr"].anatomy.heart_center, cases["ct"].anatomy.heart_center)


# --- geometry -----------------------------------------------------------------------------------


def test_grids_follow_parameters(cases, small: PhantomParams) -> None:
    ct, mr = cases["ct"], cases["mr"]
    assert ct.image.GetSpacing() == pytest.approx(small.ct_spacing_mm)
    assert mr.image.GetSpacing() == pytest.approx(small.mr_spacing_mm)
    assert list(ct.image.GetSize()) == [round(f / s) for f, s in zip(small.ct_fov_mm, small.ct_spacing_mm)]
    assert list(mr.image.GetSize()) == [round(f / s) for f, s in zip(small.mr_fov_mm, small.mr_spacing_mm)]
    for case in (ct, mr):
        assert same_geometry(case.image, case.label), "image and label must share one grid"


def test_default_geometry_thick_mr_isotropic_ct() -> None:
    p = PhantomParams()
    assert len(set(p.ct_spacing_mm)) == 1, "CT voxels are isotropic"
    assert p.mr_spacing_mm[2] >= 2.5 * max(p.mr_spacing_mm[:2]), "MR has thick slices"
    assert max(p.ct_spacing_mm) < min(p.mr_spacing_mm), "CT is finer than MR in-plane"
    for kind in ("ct", "mr"):
        assert all(170 <= f <= 220 for f in getattr(p, f"{kind}_fov_mm")), "FOV of a cardiac crop"


def test_direction_matrices_differ(cases) -> None:
    ct = np.reshape(cases["ct"].image.GetDirection(), (3, 3))
    mr = np.reshape(cases["mr"].image.GetDirection(), (3, 3))
    np.testing.assert_allclose(ct, np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    for d in (ct, mr):
        np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(mr) == pytest.approx(1.0)
    # MR: coronal slices (stacked along a roughly anterior-posterior axis, axes permuted), tilted 10-25 deg
    assert np.cos(np.deg2rad(26)) < abs(mr[1, 2]) < np.cos(np.deg2rad(9))
    assert not np.allclose(np.abs(mr), np.abs(ct), atol=0.1)


def test_labels_are_evaluated_at_voxel_centres(cases) -> None:
    """Re-evaluating the analytic anatomy at sitk's physical voxel centres reproduces the label map."""
    rng = np.random.default_rng(0)
    for case in cases.values():
        lab = sitk.GetArrayViewFromImage(case.label)
        size = case.label.GetSize()
        idx = np.stack([rng.integers(0, n, 3000) for n in size], axis=1)
        fg = np.argwhere(lab > 0)[:, ::-1][rng.integers(0, int((lab > 0).sum()), 3000)]
        idx = np.concatenate([idx, fg])
        pts = np.array([case.label.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in idx])
        expected = case.tissue[idx[:, 2], idx[:, 1], idx[:, 0]]
        agree = np.mean(tissue_at(case.anatomy, pts) == expected)
        assert agree > 0.995, agree


# --- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_labels_are_raw_mmwhs_values_with_all_structures(kind: str, small: PhantomParams) -> None:
    for case in ("1001", "1002", "1003"):
        image, label = generate_case(kind, case_rng(11, kind, case), small)
        assert image.GetPixelID() == sitk.sitkFloat32
        assert label.GetPixelID() == sitk.sitkUInt16
        values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
        assert values <= RAW
        assert set(FOREGROUND) <= values, f"{kind} {case}: missing {set(FOREGROUND) - values}"


def test_structures_have_plausible_volumes(cases) -> None:
    for kind, case in cases.items():
        lab = sitk.GetArrayViewFromImage(case.label)
        ml = float(np.prod(case.label.GetSpacing())) / 1000.0
        vols = {v: float((lab == v).sum()) * ml for v in FOREGROUND}
        assert 40 < vols[205] < 250, (kind, vols)  # LV myocardium
        assert 25 < vols[500] < 250, (kind, vols)  # LV cavity
        assert 15 < vols[420] < 150, (kind, vols)  # LA cavity
        assert 10 < vols[820] < 150, (kind, vols)  # ascending aorta inside the FOV


def test_background_holds_blood_that_is_not_labelled(cases) -> None:
    """RV/RA/PA/descending aorta are blood too, so intensity alone cannot find the labels."""
    for case in cases.values():
        unlabelled_blood = np.isin(case.tissue, [Tissue.BLOOD_VEN, Tissue.BLOOD_ART]).sum()
        labelled_blood = np.isin(case.tissue, [Tissue.BLOOD_LV, Tissue.BLOOD_LA, Tissue.BLOOD_AA]).sum()
        assert unlabelled_blood > 0.5 * labelled_blood
        assert (np.isin(case.tissue, [Tissue.MYO_OTHER]).sum()) > 0


# --- appearance ---------------------------------------------------------------------------------


def test_mr_and_ct_contrasts_differ(cases) -> None:
    mr, ct = cases["mr"], cases["ct"]
    m = {t: _mean(mr, t) for t in (Tissue.BLOOD_LV, Tissue.MYO_LV, Tissue.FAT, Tissue.MUSCLE, Tissue.LUNG, Tissue.BONE_CORTICAL)}
    c = {t: _mean(ct, t) for t in m}
    # shared: blood brighter than myocardium, lung dark
    assert m[Tissue.BLOOD_LV] > 2 * m[Tissue.MYO_LV] and c[Tissue.BLOOD_LV] > c[Tissue.MYO_LV] + 100
    # MR: fat bright, myocardium darker than fat and than skeletal muscle, bone dark
    assert m[Tissue.FAT] > 0.7 * m[Tissue.BLOOD_LV]
    assert m[Tissue.MYO_LV] < m[Tissue.FAT] and m[Tissue.MYO_LV] < m[Tissue.MUSCLE]
    assert m[Tissue.BONE_CORTICAL] < m[Tissue.MUSCLE]
    assert m[Tissue.LUNG] < 0.2 * m[Tissue.BLOOD_LV]
    # CT: the orders flip
    assert c[Tissue.FAT] < -50 < c[Tissue.MUSCLE] < c[Tissue.MYO_LV]
    assert c[Tissue.BONE_CORTICAL] > 300 > c[Tissue.MUSCLE]
    assert np.sign(m[Tissue.FAT] - m[Tissue.MYO_LV]) != np.sign(c[Tissue.FAT] - c[Tissue.MYO_LV])
    assert np.sign(m[Tissue.BONE_CORTICAL] - m[Tissue.MUSCLE]) != np.sign(c[Tissue.BONE_CORTICAL] - c[Tissue.MUSCLE])


def test_ct_is_in_hounsfield_units(cases) -> None:
    ct = cases["ct"]
    img = sitk.GetArrayViewFromImage(ct.image)
    assert -1200 < float(img.min()) and float(img.max()) < 1500
    assert _mean(ct, Tissue.AIR) == pytest.approx(-1000, abs=60)
    assert -900 < _mean(ct, Tissue.LUNG) < -700
    assert -150 < _mean(ct, Tissue.FAT) < -50
    assert 200 < _mean(ct, Tissue.BLOOD_LV) < 420
    air = img[ct.tissue == Tissue.AIR]
    assert 10 < float(air.std()) < 40, "Gaussian noise of 15-30 HU"


def test_mr_has_arbitrary_scale_and_rician_noise(small: PhantomParams) -> None:
    scales = []
    for case in ("1001", "1002", "1003", "1004"):
        c = simulate_case("mr", case_rng(5, "mr", case), small)
        img = sitk.GetArrayViewFromImage(c.image)
        assert float(img.min()) >= 0.0, "magnitude images are non-negative"
        blood = float(img[c.tissue == Tissue.BLOOD_LV].mean())
        air = img[c.tissue == Tissue.AIR]
        assert 0 < float(air.mean()) < 0.15 * blood, "air is ~0 (Rician noise floor)"
        scales.append(blood)
    assert max(scales) / min(scales) > 1.5, "global gain varies between subjects"


# --- parameters and files -----------------------------------------------------------------------


def test_unknown_override_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"datasets\.synthetic\.source\.params\.foo: unknown phantom parameter"):
        PhantomParams.from_overrides({"foo": 1})
    with pytest.raises(ConfigError, match=r"ct_spacing_mm"):
        PhantomParams.from_overrides({"ct_spacing_mm": 1.0})
    with pytest.raises(ConfigError, match=r"mr_subslices"):
        PhantomParams.from_overrides({"mr_subslices": 2})
    with pytest.raises(ConfigError, match=r"ct_blood_hu"):
        PhantomParams.from_overrides({"ct_blood_hu": [400, 250]})


def test_overrides_are_applied() -> None:
    p = PhantomParams.from_overrides({"ct_spacing_mm": [2, 2, 2], "mr_subslices": 5, "heart_rotation_deg": 5})
    assert p.ct_spacing_mm == (2.0, 2.0, 2.0) and p.mr_subslices == 5 and p.heart_rotation_deg == 5.0
    assert PhantomParams.from_overrides(None) == PhantomParams()


def _spec(tmp_path, params: dict, cases=(1001, 1002)):
    raw = {
        "root": str(tmp_path / "raw"),
        "source": {"kind": "synthetic", "seed": 2026, "params": params},
        "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {0: 0, 205: 1, 420: 2, 500: 3, 820: 4}},
        "modalities": {
            m: {"kind": m, "image": f"{m}_train/{m}_train_{{case}}_image.nii.gz", "label": f"{m}_train/{m}_train_{{case}}_label.nii.gz", "cases": list(cases), "test": [cases[-1]]}
            for m in ("mr", "ct")
        },
    }
    return dataset_from_config("synthetic", raw, tmp_path)


def test_generate_modality_writes_cases_and_card(tmp_path) -> None:
    spec = _spec(tmp_path, SMALL)
    written = generate_modality(spec, "ct")
    card_dir = spec.root / "ct"
    for case in ("1001", "1002"):
        image = read_image(spec.image_path("ct", case))
        label = read_image(spec.label_path("ct", case), kind="label")
        assert same_geometry(image, label)
        assert set(np.unique(sitk.GetArrayViewFromImage(label)).tolist()) == RAW
        # the file holds exactly the case the seeding scheme promises
        ref_image, ref_label = generate_case("ct", case_rng(2026, "ct", case), PhantomParams.from_overrides(SMALL))
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(label), sitk.GetArrayViewFromImage(ref_label))
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(ref_image))
    assert set(written) >= {spec.image_path("ct", "1001"), spec.label_path("ct", "1002"), card_dir / "dataset_card.md", card_dir / "dataset_card.json"}
    assert all(p.is_file() for p in written)
    card = json.loads((card_dir / "dataset_card.json").read_text())
    assert card["seed"] == 2026 and card["cases"] == ["1001", "1002"] and card["test_cases"] == ["1002"]
    assert card["generator_version"] == GENERATOR_VERSION
    assert card["params"]["ct_spacing_mm"] == [2.0, 2.0, 2.0]
    assert set(card["params"]) == set(PhantomParams().as_dict())
    md = (card_dir / "dataset_card.md").read_text()
    assert "2026" in md and "ct_noise_hu" in md and "1002" in md
    assert not (tmp_path / "raw" / "mr").exists(), "only the requested modality is written"


def test_generate_modality_rejects_bad_source(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"datasets\.synthetic\.source\.params\.bogus: unknown phantom parameter"):
        generate_modality(_spec(tmp_path, {"bogus": 3}), "mr")
    spec = _spec(tmp_path, {})
    bad = type(spec)(spec.name, spec.root, {"kind": "synthetic", "seed": "abc"}, spec.labels, spec.modalities)
    with pytest.raises(ConfigError, match=r"seed"):
        generate_modality(bad, "mr")


def test_default_size_matches_fov_and_spacing() -> None:
    """Default grids are FOV / spacing voxels (speed is measured in benchmarks/bench_synth.py)."""
    for kind in ("mr", "ct"):
        image, _ = generate_case(kind, case_rng(1, kind, "1001"), PhantomParams())
        assert image.GetSize() == tuple(round(f / s) for f, s in zip(getattr(PhantomParams(), f"{kind}_fov_mm"), getattr(PhantomParams(), f"{kind}_spacing_mm")))


def test_mr_obliquity_and_fov_aim_vary_per_scan(small: PhantomParams) -> None:
    from xmodseg.synth.grid import sample_grid

    heart = np.array([10.0, -10.0, 0.0])
    normals = []
    for i in range(20):
        grid = sample_grid("mr", np.random.default_rng(i), small, heart)
        d = np.reshape(grid.direction, (3, 3))
        tilt = np.degrees(np.arccos(abs(d[1, 2])))
        assert small.mr_oblique_deg[0] - 1e-6 <= tilt <= small.mr_oblique_deg[1] + 1e-6
        centre = np.asarray(grid.origin) + grid.matrix @ ((np.asarray(grid.size) - 1) / 2)
        assert np.linalg.norm(centre - heart) < 40.0, "the FOV is aimed at the heart"
        normals.append(d[:, 2])
    assert np.ptp(np.asarray(normals), axis=0).max() > 0.2

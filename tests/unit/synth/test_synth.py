"""The embedded synthetic MR/CT cardiac phantom: determinism, geometry, labels, appearance, files.

Version 1 must stay exactly what it was (its data sets are reproducible under `version: 1`);
version 2 adds texture, artefacts and contrast relations (xmodseg.synth.render_v2, anatomy_v2).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from xmodseg.errors import ConfigError
from xmodseg.imageio import read_image, same_geometry
from xmodseg.registry import dataset_from_config
from xmodseg.synth import PhantomParams, generate_case, generate_modality
from xmodseg.synth.anatomy import tissue_at
from xmodseg.synth.generate import GENERATOR_VERSION, GENERATOR_VERSIONS, case_rng, simulate_case
from xmodseg.synth.tissues import ExtraTissue, Tissue

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
    """Version 1 (the tests written for it keep checking it)."""
    return PhantomParams.from_overrides(SMALL, version=1)


@pytest.fixture(scope="module")
def small2() -> PhantomParams:
    return PhantomParams.from_overrides(SMALL, version=2)


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def either(request) -> PhantomParams:
    return PhantomParams.from_overrides(SMALL, version=request.param)


@pytest.fixture(scope="module")
def cases(small: PhantomParams):
    """Case 1001 of each modality (seed 2026), as the data-set generator would draw them."""
    return {kind: simulate_case(kind, case_rng(2026, kind, "1001"), small) for kind in ("mr", "ct")}


@pytest.fixture(scope="module")
def cases2(small2: PhantomParams):
    return {kind: simulate_case(kind, case_rng(2026, kind, "1001"), small2) for kind in ("mr", "ct")}


def _arrays(image: sitk.Image, label: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)


def _mean(case, tissue: Tissue) -> float:
    img = sitk.GetArrayViewFromImage(case.image)
    mask = case.tissue == tissue
    assert mask.sum() > 20, f"too few {tissue.name} voxels to compare"
    return float(img[mask].mean())


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_same_seed_gives_identical_case(kind: str, either: PhantomParams) -> None:
    a = generate_case(kind, np.random.default_rng([7, 1, 1001]), either)
    b = generate_case(kind, np.random.default_rng([7, 1, 1001]), either)
    for x, y in zip(_arrays(*a), _arrays(*b)):
        np.testing.assert_array_equal(x, y)
    assert same_geometry(a[0], b[0])


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_different_case_gives_different_anatomy(kind: str, either: PhantomParams) -> None:
    a = simulate_case(kind, case_rng(2026, kind, "1001"), either)
    b = simulate_case(kind, case_rng(2026, kind, "1002"), either)
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
def test_labels_are_raw_mmwhs_values_with_all_structures(kind: str, either: PhantomParams) -> None:
    for case in ("1001", "1002", "1003"):
        image, label = generate_case(kind, case_rng(11, kind, case), either)
        assert image.GetPixelID() == sitk.sitkFloat32
        assert label.GetPixelID() == sitk.sitkUInt16
        values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
        assert values <= RAW
        assert set(FOREGROUND) <= values, f"{kind} {case}: missing {set(FOREGROUND) - values}"


@pytest.mark.parametrize("version", [1, 2])
def test_structures_have_plausible_volumes(version: int, cases, cases2) -> None:
    for kind, case in (cases if version == 1 else cases2).items():
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


def test_version_2_parameters_are_validated_and_refused_in_version_1() -> None:
    with pytest.raises(ConfigError, match=r"params\.mr_banding_depth: values must be in \[0, 1\]"):
        PhantomParams.from_overrides({"mr_banding_depth": [0.5, 1.5]})
    with pytest.raises(ConfigError, match=r"params\.ct_svc_hu: range low"):
        PhantomParams.from_overrides({"ct_svc_hu": [900, 300]})
    with pytest.raises(ConfigError, match=r"params\.texture_corr_mm: values must be > 0"):
        PhantomParams.from_overrides({"texture_corr_mm": [0, 3]})
    with pytest.raises(ConfigError, match=r"params\.trabecular_mm: must stay below half"):
        PhantomParams.from_overrides({"trabecular_mm": [1, 12]})
    with pytest.raises(ConfigError, match=r"params\.ct_streak_fraction: a phantom version 2 parameter; set source\.version: 2"):
        PhantomParams.from_overrides({"ct_streak_fraction": [0.1, 0.2]}, version=1)
    assert PhantomParams.defaults(1).as_dict() == {k: v for k, v in PhantomParams.defaults(1).as_dict().items() if k in V1_FIELDS}
    assert PhantomParams.from_overrides({"ct_streak_fraction": [0.1, 0.2]}).ct_streak_fraction == (0.1, 0.2)
    assert PhantomParams(version=1).problems(), "version 1 with version-2 features on is not a valid parameter set"


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


def _spec(tmp_path, params: dict, cases=(1001, 1002), version: int | None = None):
    source = {"kind": "synthetic", "seed": 2026, "params": params, **({} if version is None else {"version": version})}
    raw = {
        "root": str(tmp_path / "raw"),
        "source": source,
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
        # the file holds exactly the case the seeding scheme promises (no `version`: version 1)
        ref_image, ref_label = generate_case("ct", case_rng(2026, "ct", case), PhantomParams.from_overrides(SMALL, version=1))
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(label), sitk.GetArrayViewFromImage(ref_label))
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(ref_image))
    assert set(written) >= {spec.image_path("ct", "1001"), spec.label_path("ct", "1002"), card_dir / "dataset_card.md", card_dir / "dataset_card.json"}
    assert all(p.is_file() for p in written)
    card = json.loads((card_dir / "dataset_card.json").read_text())
    assert card["seed"] == 2026 and card["cases"] == ["1001", "1002"] and card["test_cases"] == ["1002"]
    assert card["generator_version"] == GENERATOR_VERSIONS[1] == "1.0.0" and "phantom_version" not in card
    assert card["params"]["ct_spacing_mm"] == [2.0, 2.0, 2.0]
    assert list(card["params"]) == list(V1_FIELDS), "a version-1 card lists exactly version 1's parameters"
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


# --- version 1 stays what it was ------------------------------------------------------------------

# Version 1's parameters, in card order (a version-1 card must list exactly these).
V1_FIELDS = (
    "ct_spacing_mm", "ct_fov_mm", "mr_spacing_mm", "mr_fov_mm", "mr_subslices", "mr_oblique_deg", "fov_jitter_mm",
    "heart_rotation_deg", "heart_scale_jitter", "heart_offset_mm", "chamber_jitter", "deform_amplitude_mm",
    "deform_wavelength_mm", "deform_components", "myo_thickness_mm", "lv_cavity_radius_mm", "lv_cavity_length_mm",
    "aorta_radius_mm", "epicardial_fat_mm", "subcutaneous_fat_mm", "body_scale_jitter", "tissue_jitter", "mr_gain",
    "mr_bias_amplitude", "mr_bias_wavelength_mm", "mr_noise_fraction", "ct_blood_hu", "ct_myocardium_hu", "ct_noise_hu",
    "ct_psf_sigma_mm",
)  # fmt: skip

# Case 1001, seed 2026, SMALL grids, version 1, as generated before version 2 existed: the generator's
# state after the case (exact on every machine: it counts the draws), the heart centre (uniform draws
# and constants only) and the label volumes (voxel counts; a CPU with other float rounding may move a
# boundary voxel, hence the tolerance).
V1_PINNED = {
    "mr": (261816905784402983887198839968848104902, (6.257769695043727, -22.651629234355408, -4.220276480259983), {205: 3410, 420: 1461, 500: 2986, 820: 1835}),
    "ct": (143122138599941511864119431342680322388, (17.27396834909452, -9.56910431859673, -7.786086183008751), {205: 18063, 420: 6621, 500: 11016, 820: 3695}),
}


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_version_1_matches_its_pinned_draws(kind: str, small: PhantomParams) -> None:
    state, centre, volumes = V1_PINNED[kind]
    rng = case_rng(2026, kind, "1001")
    case = simulate_case(kind, rng, small)
    assert rng.bit_generator.state["state"]["state"] == state, "version 1 draws a different random sequence than before"
    np.testing.assert_allclose(case.anatomy.heart_center, centre, rtol=0, atol=1e-9)
    lab = sitk.GetArrayViewFromImage(case.label)
    for raw, n in volumes.items():
        assert abs(int((lab == raw).sum()) - n) <= max(3, n // 500), (raw, int((lab == raw).sum()), n)


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_version_1_equals_its_reference_path(kind: str, small: PhantomParams) -> None:
    """The version dispatch leaves version 1 alone: the version-1 functions called directly, in version 1's
    order, give the same arrays bit for bit."""
    from xmodseg.synth.anatomy import sample_anatomy, tissue_at_chunks
    from xmodseg.synth.grid import chunked_coordinates, sample_grid, subslice_grid, unchunk
    from xmodseg.synth.render import render_ct, render_mr, sample_ct_appearance, sample_mr_appearance
    from xmodseg.synth.tissues import tissue_to_label

    rng = case_rng(2026, kind, "1002")
    anatomy = sample_anatomy(rng, small)
    grid = sample_grid(kind, rng, small, anatomy.heart_center)
    if kind == "mr":
        app = sample_mr_appearance(rng, small)
        fine = subslice_grid(grid, small.mr_subslices)
        tissue_fine = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(fine)), fine)
        image = render_mr(tissue_fine, small.mr_subslices, grid, app, rng)
        tissue = tissue_fine[small.mr_subslices // 2 :: small.mr_subslices]
    else:
        tissue = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(grid)), grid)
        image = render_ct(tissue, grid, sample_ct_appearance(rng, small), rng)
    got = simulate_case(kind, case_rng(2026, kind, "1002"), small)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(got.image), image.astype(np.float32))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(got.label), tissue_to_label(tissue))


def test_registry_version_defaults_to_1_and_is_checked(tmp_path) -> None:
    from xmodseg.synth.generate import _version

    assert _version({"kind": "synthetic"}, "k") == 1
    assert _version({"version": 2}, "k") == 2
    with pytest.raises(ConfigError, match=r"datasets\.synthetic\.source\.version: expected one of \[1, 2\]"):
        generate_modality(_spec(tmp_path, SMALL, version=3), "mr")


def test_version_2_card(tmp_path) -> None:
    spec = _spec(tmp_path, SMALL, cases=(1001, 1002), version=2)
    spec = type(spec)(spec.name, spec.root, spec.source, spec.labels, {"mr": replace(spec.modality("mr"), cases=("1002",), test_cases=())})
    generate_modality(spec, "mr")
    card = json.loads((spec.root / "mr" / "dataset_card.json").read_text())
    assert card["phantom_version"] == 2 and card["generator_version"] == GENERATOR_VERSION == "2.0.0"
    assert {"mr_banding_depth", "ct_svc_hu", "texture_scale"} <= set(card["params"]) and "version" not in card["params"]
    assert any("coil" in f for f in card["version_features"])
    md = (spec.root / "mr" / "dataset_card.md").read_text()
    assert "phantom version 2" in md and "What phantom version 2 adds" in md and "trabeculated" in md


# --- version 2 ------------------------------------------------------------------------------------


def test_version_2_keeps_the_layout_of_version_1(small: PhantomParams, small2: PhantomParams) -> None:
    """Version 2 takes version 1's draws first: the same case is the same subject, only more varied."""
    from xmodseg.synth.anatomy import sample_anatomy
    from xmodseg.synth.anatomy_v2 import sample_anatomy_v2
    from xmodseg.synth.heart import NOMINAL_CENTER

    rng1, rng2 = case_rng(2026, "ct", "1003"), case_rng(2026, "ct", "1003")
    a1 = sample_anatomy(rng1, small)
    a2 = sample_anatomy_v2(rng2, rng2.spawn(1)[0], small2)
    ratio = small2.heart_offset_mm / small.heart_offset_mm
    np.testing.assert_allclose(a2.heart_center - NOMINAL_CENTER, ratio * (a1.heart_center - NOMINAL_CENTER), atol=1e-9)


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_version_2_lv_cavity_holds_muscle_like_structures(kind: str, small2: PhantomParams) -> None:
    case = simulate_case(kind, case_rng(2026, kind, "1001"), replace(small2, papillary_radius_mm=(4.0, 5.0), trabecular_mm=(2.0, 3.0)))
    lab = sitk.GetArrayViewFromImage(case.label)
    for t in (ExtraTissue.TRABECULAE, ExtraTissue.PAPILLARY):
        mask = case.tissue == t
        assert mask.sum() > 5, t.name
        assert np.all(lab[mask] == 500), f"{t.name} is labelled LV cavity"
    papillary, blood, myo = (_mean(case, t) for t in (ExtraTissue.PAPILLARY, Tissue.BLOOD_LV, Tissue.MYO_LV))
    assert abs(papillary - myo) < abs(papillary - blood), "papillary muscles look like muscle, not blood"


def _interior(mask: np.ndarray, iterations: int = 2) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=iterations)


@pytest.mark.parametrize("kind", ["mr", "ct"])
def test_version_2_texture_is_correlated_within_tissue_variation(kind: str) -> None:
    """Same case with and without texture (identical draws, so identical noise): the difference is the
    texture, a spatially correlated variation inside each tissue."""
    params = PhantomParams.from_overrides({**SMALL, "mr_noise_fraction": [0.01, 0.01], "ct_noise_hu": [5, 5]})
    a = simulate_case(kind, case_rng(3, kind, "1001"), params)
    b = simulate_case(kind, case_rng(3, kind, "1001"), replace(params, texture_scale=(0.0, 0.0)))
    np.testing.assert_array_equal(a.tissue, b.tissue)
    diff = sitk.GetArrayFromImage(a.image).astype(np.float64) - sitk.GetArrayFromImage(b.image)
    for tissue in (Tissue.LIVER, Tissue.MUSCLE, Tissue.MYO_LV, Tissue.FAT):
        mask = _interior(a.tissue == tissue, 1)
        pair = mask[:, :, :-1] & mask[:, :, 1:]
        assert pair.sum() > 50
        d0, d1 = diff[:, :, :-1][pair], diff[:, :, 1:][pair]
        level = abs(_mean(b, tissue)) if kind == "mr" else 100.0  # MR: relative to the tissue, CT: HU / 100
        assert float(d0.std()) > 0.03 * level, (tissue.name, float(d0.std()), level)
        assert float(np.corrcoef(d0, d1)[0, 1]) > 0.5, tissue.name


def test_version_2_ct_noise_is_spatially_correlated() -> None:
    """Neighbouring voxels of a homogeneous region share noise in version 2 (filtered back-projection
    texture), not in version 1 (white noise)."""
    base = {"ct_fov_mm": [110.0, 110.0, 40.0], "texture_scale": [0, 0], "ct_svc_hu": [0, 0], "ct_beam_hardening_hu": [0, 0]}
    corr = {}
    for name, extra in (("white", {"ct_noise_corr_mm": 0.0}), ("correlated", {})):
        case = simulate_case("ct", case_rng(4, "ct", "1001"), PhantomParams.from_overrides({**base, **extra}))
        img = sitk.GetArrayFromImage(case.image).astype(np.float64)
        mask = _interior(case.tissue == Tissue.LUNG, 3)
        pair = mask[:, :, :-1] & mask[:, :, 1:]
        a, b = img[:, :, :-1][pair], img[:, :, 1:][pair]
        corr[name] = float(np.corrcoef(a - a.mean(), b - b.mean())[0, 1])
    assert abs(corr["white"]) < 0.1 and corr["correlated"] > 0.3, corr


def test_version_2_ct_streaks_radiate_from_the_svc(small2: PhantomParams) -> None:
    """With and without streaks (identical draws): the difference lives in SVC slices and fades with distance."""
    import dataclasses

    dense = dataclasses.replace(small2, ct_svc_hu=(2000.0, 2000.0), ct_streak_fraction=(0.2, 0.2), ct_beam_hardening_hu=(0.0, 0.0), ct_noise_hu=(5.0, 5.0))
    a = simulate_case("ct", case_rng(2026, "ct", "1005"), dense)
    b = simulate_case("ct", case_rng(2026, "ct", "1005"), dataclasses.replace(dense, ct_streak_fraction=(0.0, 0.0)))
    diff = np.abs(sitk.GetArrayFromImage(a.image) - sitk.GetArrayFromImage(b.image))
    svc = a.tissue == ExtraTissue.BLOOD_SVC
    slices = svc.any(axis=(1, 2))
    assert slices.sum() > 3 and diff[~slices].max() == 0, "streaks only in slices through the SVC"
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~svc, sampling=a.grid.spacing[::-1])
    sel = slices[:, None, None] & np.ones_like(svc)
    near = float(diff[sel & (dist > 2) & (dist < 20)].mean())
    far = float(diff[sel & (dist > 80)].mean())
    assert near > 40 and near > 4 * far, (near, far)


def test_version_2_beam_hardening_darkens_between_svc_and_spine(small2: PhantomParams) -> None:
    import dataclasses

    dense = dataclasses.replace(small2, ct_svc_hu=(1500.0, 1500.0), ct_streak_fraction=(0.0, 0.0), ct_beam_hardening_hu=(80.0, 80.0))
    a = simulate_case("ct", case_rng(2026, "ct", "1006"), dense)
    b = simulate_case("ct", case_rng(2026, "ct", "1006"), dataclasses.replace(dense, ct_beam_hardening_hu=(0.0, 0.0)))
    diff = sitk.GetArrayFromImage(a.image) - sitk.GetArrayFromImage(b.image)
    assert diff.max() <= 0 and diff.min() < -50, "a dark band only"
    k = int(np.argmin(diff.min(axis=(1, 2))))
    band = np.argwhere(diff[k] < -40) * a.grid.spacing[0]
    svc = np.argwhere(a.tissue[k] == ExtraTissue.BLOOD_SVC).mean(axis=0) * a.grid.spacing[0]
    spine = np.argwhere(np.isin(a.tissue[k], (Tissue.BONE_CORTICAL, Tissue.BONE_MARROW))) * a.grid.spacing[0]
    reach = np.linalg.norm(band - svc, axis=1).max()
    assert reach > 40, "the band runs from the SVC towards the spine"
    assert np.min(np.linalg.norm(spine[:, None] - band[None, np.argmax(np.linalg.norm(band - svc, axis=1))], axis=2)) < 15, "and ends at bone"


def test_version_2_contrast_relations_differ_between_modalities(small2: PhantomParams) -> None:
    """Look-alikes in one modality only and brightness orders that swap, over many subjects."""
    from xmodseg.synth.render_v2 import sample_ct_appearance_v2, sample_mr_appearance_v2

    for i in range(40):
        rng = np.random.default_rng([99, i])
        mr = sample_mr_appearance_v2(rng, small2, np.zeros(3)).values
        ct = sample_ct_appearance_v2(rng, small2).values
        lv = Tissue.BLOOD_LV
        # MR only: fat and right-heart and caval blood look like LV blood
        assert mr[Tissue.FAT] >= 0.85 * mr[lv] and ct[Tissue.FAT] < ct[lv] - 250
        assert mr[Tissue.BLOOD_VEN] >= 0.8 * mr[lv] and mr[ExtraTissue.BLOOD_IVC] >= 0.85 * mr[lv]
        # CT only: the unenhanced IVC looks like muscle, not blood
        assert abs(ct[ExtraTissue.BLOOD_IVC] - ct[Tissue.MUSCLE]) < 40 and ct[ExtraTissue.BLOOD_IVC] < ct[lv] - 100
        assert mr[ExtraTissue.BLOOD_IVC] > 2 * mr[Tissue.MUSCLE]
        # swaps: myocardium below liver and skeletal muscle in MR, above them in CT
        for other in (Tissue.LIVER, Tissue.MUSCLE):
            assert mr[Tissue.MYO_LV] < mr[other] and ct[Tissue.MYO_LV] > ct[other]


def test_version_2_image_contrasts(cases2) -> None:
    """The relations hold in rendered images too (coil, bias, texture and noise included)."""
    mr, ct = cases2["mr"], cases2["ct"]
    blood_mr, blood_ct = _mean(mr, Tissue.BLOOD_LV), _mean(ct, Tissue.BLOOD_LV)
    assert _mean(mr, Tissue.FAT) > 0.5 * blood_mr and _mean(ct, Tissue.FAT) < -50 < 150 < blood_ct
    assert _mean(ct, ExtraTissue.BLOOD_SVC) > blood_ct, "undiluted contrast in the SVC"
    assert _mean(ct, Tissue.MYO_LV) > _mean(ct, Tissue.LIVER)


def test_version_2_mr_artefacts() -> None:
    from xmodseg.synth.render_v2 import _banding, _chemical_shift, _coil_sensitivity, sample_mr_appearance_v2

    params = PhantomParams.from_overrides(
        {"mr_banding_cycles": [1.5, 1.5], "mr_banding_depth": [0.8, 0.8], "mr_coil_falloff_mm": [60, 60], "mr_coil_posterior": [0.5, 0.5]}
    )
    app = sample_mr_appearance_v2(np.random.default_rng(1), params, np.array([10.0, -15.0, 0.0]))
    # coil: 1 at the heart centre, brighter towards the anterior chest wall (capped), darker behind the heart (LA)
    y = np.array([-15.0, -95.0, 25.0, -300.0], dtype=np.float32)
    sens = _coil_sensitivity(y, app)
    assert sens[0] == pytest.approx(1.0, abs=1e-5) and sens[1] > 1.5 and sens[2] < 1.0 and sens[3] == pytest.approx(params.mr_coil_max)
    # banding: dark bands where the off-resonance phase passes pi, signal kept elsewhere
    g = np.linspace(-100, 100, 81, dtype=np.float32)
    x, yy, z = np.meshgrid(g, g, g, indexing="ij")
    profile = _banding(x, yy, z, app)
    assert profile.min() < 1 - 0.7 * 0.8 and np.median(profile) > 0.9
    # chemical shift: fat voxels touching water in-plane lose signal, fat interiors and water do not
    tissue = np.full((1, 5, 8), int(Tissue.FAT), dtype=np.uint8)
    tissue[:, :, 5:] = Tissue.MUSCLE
    signal = np.ones(tissue.shape, dtype=np.float32)
    _chemical_shift(tissue, signal, 0.6)
    assert np.allclose(signal[:, :, 4], 0.4) and np.all(signal[:, :, :4] == 1) and np.all(signal[:, :, 5:] == 1)


def test_comparison_figure_is_written(tmp_path) -> None:
    from xmodseg.synth.figure import comparison_figure

    out = comparison_figure("ct", tmp_path / "docs" / "fig.png", cases=("1001",), overrides=SMALL)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size < 300_000


def test_version_2_fat_pads_replace_lung_only(small2: PhantomParams) -> None:
    """Pericardial fat pads add fat next to the heart, taken from the lungs only."""
    a = simulate_case("ct", case_rng(2026, "ct", "1002"), replace(small2, fat_pad_mm=(25.0, 25.0)))
    b = simulate_case("ct", case_rng(2026, "ct", "1002"), replace(small2, fat_pad_mm=(0.0, 0.0)))
    grew = (a.tissue == Tissue.FAT) & (b.tissue != Tissue.FAT)
    assert grew.sum() > 200
    assert np.all(b.tissue[grew] == Tissue.LUNG)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a.label), sitk.GetArrayViewFromImage(b.label))

"""The data-set card written next to the generated files: what the phantom models and how it was made.

The card holds no timestamps or timings, so regenerating with the same seed and parameters
gives byte-identical cards (pipelines can compare them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xmodseg.synth import render_v2
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.render import CT_RANGES, MR_NOMINAL
from xmodseg.synth.tissues import RAW_LABELS, ExtraTissue, Tissue

LABEL_NAMES = {
    Tissue.MYO_LV: "LV myocardium (MYO)",
    Tissue.BLOOD_LA: "left atrial blood cavity (LAC)",
    Tissue.BLOOD_LV: "left ventricular blood cavity (LVC)",
    Tissue.BLOOD_AA: "ascending aorta (AA)",
}

UNLABELLED = (
    "right ventricle and right atrium (blood cavities and walls)",
    "pulmonary artery trunk and branches, pulmonary veins, superior and inferior vena cava",
    "descending aorta",
    "epicardial, mediastinal and subcutaneous fat",
    "lungs, trachea and main bronchi, oesophagus",
    "chest wall and paraspinal muscle, diaphragm, liver",
    "vertebrae (cortical shell, marrow, discs), spinal canal, ribs with costal cartilage, sternum",
    "air outside the body",
)

MODALITY_TEXT = {
    "mr": (
        "bSSFP-like cardiac MR: bright blood and fat, dark myocardium, intermediate skeletal muscle, dark lung "
        "and cortical bone; smooth multiplicative bias field, Rician noise, arbitrary per-subject gain; coronal "
        "thick-slice stack tilted obliquely, with through-slice partial volume."
    ),
    "ct": (
        "Contrast-enhanced cardiac CT in Hounsfield units: bright contrast blood, myocardium brighter than fat, "
        "bone brightest, lung and air near -1000 HU; Gaussian PSF blur and Gaussian noise; near-axial grid stored "
        "with direction diag(-1, -1, 1)."
    ),
}


MODALITY_TEXT_V2 = {
    "mr": (
        "bSSFP-like cardiac MR (phantom version 2): bright blood and fat, dark myocardium, skeletal muscle and liver "
        "brighter than myocardium, dark lung and cortical bone; textured tissues; anterior and posterior surface-coil "
        "sensitivity falling off with depth, smooth bias, bSSFP off-resonance dark bands, dark fat/water boundary "
        "lines, Rician noise, arbitrary per-subject gain; coronal thick-slice stack tilted obliquely, with "
        "through-slice partial volume."
    ),
    "ct": (
        "Arterial-phase contrast cardiac CT in Hounsfield units (phantom version 2): bright left-heart contrast blood "
        "with per-subject bolus timing (right-heart blood 0.45-1.1 x left), myocardium brighter than liver and "
        "skeletal muscle, undiluted contrast in the superior vena cava with streaks and a beam-hardening dark band, "
        "unenhanced inferior vena cava; textured tissues; Gaussian PSF blur and spatially correlated noise; near-axial "
        "grid stored with direction diag(-1, -1, 1)."
    ),
}

# What version 2 adds, and why: the card says what a benchmark on it measures.
FEATURES_V2 = (
    "LV cavity label includes a trabeculated inner layer and two papillary muscles that look like muscle: intensity alone does not give the label",
    "tissue texture (spatially correlated, per tissue, different in MR and CT): a translator has to invent texture",
    "MR: surface-coil fall-off (the heart in the middle is darkest), bSSFP dark bands, chemical-shift lines at fat/water boundaries",
    "CT: correlated noise, streaks from undiluted SVC contrast, a beam-hardening band towards the spine",
    "look-alikes in one modality only: fat and right-heart/caval blood like LV blood in MR, not in CT; the unenhanced IVC like muscle in CT only",
    "brightness orders that swap: myocardium below liver and skeletal muscle in MR, above them in CT; right-heart vs LV blood set by bolus timing in CT",
    "wider anatomy ranges: heart pose and size, chamber sizes, LV size, aortic radius and course, epicardial fat, deformation",
)


def card_dict(
    *,
    dataset: str,
    modality: str,
    kind: str,
    seed: int,
    cases: Sequence[str],
    test_cases: Sequence[str],
    params: PhantomParams,
    image_pattern: str,
    label_pattern: str,
    version: str,
    seeding: str,
) -> dict[str, Any]:
    if params.version != 1:
        card = card_dict(
            dataset=dataset,
            modality=modality,
            kind=kind,
            seed=seed,
            cases=cases,
            test_cases=test_cases,
            params=PhantomParams.defaults(1),
            image_pattern=image_pattern,
            label_pattern=label_pattern,
            version=version,
            seeding=seeding,
        )
        card["models"] = MODALITY_TEXT_V2.get(kind, kind)
        card["labels"]["500"] += ", including the trabeculated inner layer and the papillary muscles"
        card["nominal_appearance"] = _appearance_v2(kind)
        card["params"] = params.as_dict()
        return {"phantom_version": params.version, **card, "version_features": list(FEATURES_V2)}
    return {
        "dataset": dataset,
        "modality": modality,
        "kind": kind,
        "generator": "xmodseg.synth",
        "generator_version": version,
        "models": MODALITY_TEXT.get(kind, kind),
        "subjects": "one random anatomy per case; MR and CT cases are different (unpaired) subjects",
        "seed": seed,
        "seeding": seeding,
        "cases": list(cases),
        "test_cases": list(test_cases),
        "files": {"image": image_pattern, "label": label_pattern},
        "labels": {str(raw): LABEL_NAMES[t] for t, raw in RAW_LABELS.items()},
        "unlabelled_structures": list(UNLABELLED),
        "nominal_appearance": _appearance(kind),
        "params": params.as_dict(),
    }


def card_markdown(card: dict[str, Any]) -> str:
    lines = [
        f"# Data-set card: {card['dataset']} / {card['modality']}",
        "",
        "Embedded synthetic cross-modality cardiac phantom (no patient data), written in the MM-WHS file layout.",
        "",
        f"- **Modality ({card['kind']})**: {card['models']}",
        f"- **Subjects**: {card['subjects']}.",
        f"- **Generator**: {card['generator']} version {card['generator_version']}"
        + (f" (phantom version {card['phantom_version']})" if "phantom_version" in card else ""),
        f"- **Seed**: {card['seed']} ({card['seeding']})",
        f"- **Cases** ({len(card['cases'])}): {', '.join(card['cases'])}",
        f"- **Test cases**: {', '.join(card['test_cases']) or 'none'}",
        f"- **Files**: images `{card['files']['image']}`, labels `{card['files']['label']}`",
        "",
        "## Labels (raw MM-WHS values, at voxel centres)",
        "",
        *[f"- {raw}: {name}" for raw, name in card["labels"].items()],
        "- 0: background, which contains these unlabelled structures:",
        *[f"  - {s}" for s in card["unlabelled_structures"]],
        "",
        *(["## What phantom version 2 adds", "", *[f"- {f}" for f in card["version_features"]], ""] if "version_features" in card else []),
        "## Nominal tissue appearance",
        "",
        "| tissue | value |",
        "| --- | --- |",
        *[f"| {t} | {v} |" for t, v in card["nominal_appearance"].items()],
        "",
        "## Parameters",
        "",
        "| parameter | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in card["params"].items()],
        "",
    ]
    return "\n".join(lines)


def _appearance(kind: str) -> dict[str, str]:
    if kind == "mr":
        return {t.name.lower(): f"{v:g} x blood (jittered, x gain, x bias)" for t, v in MR_NOMINAL.items()}
    out = {t.name.lower(): f"{lo:g} .. {hi:g} HU" for t, (lo, hi) in CT_RANGES.items()}
    out["blood (LV, LA, aorta, arterial)"] = "ct_blood_hu"
    out["blood (right heart, cavae)"] = "0.7 .. 1.05 x arterial blood"
    out["myocardium"] = "ct_myocardium_hu"
    return out


def _appearance_v2(kind: str) -> dict[str, str]:
    names = {int(t): t.name.lower() for t in Tissue} | {int(t): t.name.lower() for t in ExtraTissue}
    if kind == "mr":
        out = {names[t]: f"{lo:g} .. {hi:g} x LV blood (x coil, x bias, x gain)" for t, (lo, hi) in render_v2.MR_RANGES.items()}
        out["blood (LV, LA, aorta, arterial)"] = "1 (reference)"
        out["myocardium, papillary muscles"] = "myo_lv"
        out["trabeculae"] = "myocardium .. blood, mixed by a texture field"
        return out
    out = {names[t]: f"{lo:g} .. {hi:g} HU" for t, (lo, hi) in render_v2.CT_RANGES.items()}
    out["blood (LV, LA, aorta, arterial)"] = "ct_blood_hu"
    out["blood (right heart)"] = "ct_right_heart_ratio x left-heart blood, with swirls of unenhanced blood"
    out["blood_svc"] = "ct_svc_hu (undiluted contrast; streak source)"
    out["myocardium, papillary muscles"] = "ct_myocardium_hu"
    out["trabeculae"] = "myocardium .. blood, mixed by a texture field"
    return out

"""The data-set card written next to the generated files: what the phantom models and how it was made.

The card holds no timestamps or timings, so regenerating with the same seed and parameters
gives byte-identical cards (pipelines can compare them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xmodseg.synth.params import PhantomParams
from xmodseg.synth.render import CT_RANGES, MR_NOMINAL
from xmodseg.synth.tissues import RAW_LABELS, Tissue

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
        f"- **Generator**: {card['generator']} version {card['generator_version']}",
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

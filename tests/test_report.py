"""Report tables from per-seed metrics documents (no workflow run needed)."""

from __future__ import annotations

import math

from xmodseg.report import format_cell, long_table, reference_section, seed_summary


def doc(name, seed, dice_myo, dice_mean):
    stats = lambda v: {"mean": v, "std": 0.01, "n": 4, "n_undefined": 0}  # noqa: E731
    summary = {k: {"MYO": stats(dice_myo), "mean": stats(dice_mean)} for k in ("dice", "assd_mm", "sifa_dice", "sifa_assd_vox")}
    return {"experiment": {"name": name, "method": "sifa", "source": "mr", "target": "ct", "seed": seed}, "summary": summary, "_path": f"{name}/{seed}"}


def test_seed_summary_and_published_numbers():
    summary = seed_summary(long_table([doc("sifa_mr2ct", 0, 0.60, 0.70), doc("sifa_mr2ct", 1, 0.64, 0.74)]))
    row = summary[(summary["metric"] == "dice") & (summary["class"] == "mean")].iloc[0]
    assert math.isclose(row["mean"], 0.72) and math.isclose(row["std_over_seeds"], 0.02) and row["n_seeds"] == 2
    md = reference_section(summary, {"sifa_mr2ct": {"source": "SIFA TMI 2020", "dice": {"MYO": 61.6, "mean": 74.1}}, "absent": {"dice": {}}})
    assert "| sifa_mr2ct | SIFA TMI 2020 | 62.0 / 61.6 | 72.0 / 74.1 |" in md and "absent" not in md
    assert format_cell(math.nan, math.nan, 2) == "N/A (2 undef.)" and format_cell(0.5, 0.25) == "0.500 ± 0.250"

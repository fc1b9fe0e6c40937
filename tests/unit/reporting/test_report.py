"""Report tables from per-seed metrics documents (no workflow run needed)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.unit.reporting.test_compare import BASE, metrics_doc, write_doc
from xmodseg.errors import ConfigError
from xmodseg.provenance.audit import _parse_markdown, _pooled_cells
from xmodseg.reporting.report import (
    METRIC_KEYS,
    build_report,
    format_cell,
    long_table,
    markdown_table,
    method_label,
    reference_section,
    seed_summary,
)

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py


def doc(name, seed, dice_myo, dice_mean):
    stats = lambda v: {"mean": v, "std": 0.01, "n": 4, "n_undefined": 0}  # noqa: E731
    summary = {k: {"MYO": stats(dice_myo), "mean": stats(dice_mean)} for k in ("dice", "assd_mm", "sifa_dice", "sifa_assd_vox")}
    return {"experiment": {"name": name, "method": "sifa", "source": "mr", "target": "ct", "seed": seed}, "summary": summary, "_path": f"{name}/{seed}"}


def test_seed_summary_and_published_numbers():
    summary = seed_summary(long_table([doc("sifa_mr2ct", 0, 0.60, 0.70), doc("sifa_mr2ct", 1, 0.64, 0.74)]))
    row = summary[(summary["metric"] == "dice") & (summary["class"] == "mean")].iloc[0]
    assert math.isclose(row["mean"], 0.72) and math.isclose(row["std_over_seeds"], 0.02) and row["n_seeds"] == 2
    md = reference_section(summary, {"sifa_mr2ct": {"source": "SIFA TMI 2020", "dice": {"MYO": 61.6, "mean": 74.1}}, "absent": {"dice": {}}}, {"ct": "sifa_release"})
    assert "| sifa_mr2ct | sifa | release | SIFA TMI 2020 | 62.0 / 61.6 / +0.4 | 72.0 / 74.1 / -2.1 |" in md and "absent" not in md
    assert "Published claims" not in md
    claim = {"sifa_mr2ct": {"source": "GLUA abstract (arXiv 2205.11888)", "claim": "+3.92 Dice MR->CT over the state of the art (UNCONFIRMED)"}}
    md = reference_section(summary, claim, {"ct": "sifa_release"})
    assert "| sifa_mr2ct | sifa | release | GLUA abstract (arXiv 2205.11888) | 62.0 / – / – | 72.0 / – / – |" in md
    assert "- sifa_mr2ct: +3.92 Dice MR->CT over the state of the art (UNCONFIRMED) (GLUA abstract (arXiv 2205.11888))" in md
    assert format_cell(math.nan, math.nan, 2) == "N/A (2 undef.)" and format_cell(0.5, 0.25) == "0.500 ± 0.250"


def test_scale_is_stated_with_the_method_label():
    assert method_label({"method": "sifa", "scale": "demo scale: width 0.25"}) == "sifa (demo scale: width 0.25)"
    assert method_label({"method": "translate_then_segment", "translator_kind": "cyclegan", "scale": "80x80"}) == "translate_then_segment (cyclegan; 80x80)"
    assert method_label({"method": "sifa", "label": "SIFA v1", "scale": "500 it"}) == "SIFA v1 (500 it)"
    assert method_label({"method": "oracle"}) == "oracle"
    d = doc("sifa_mr2ct", 0, 0.6, 0.7)
    d["experiment"]["scale"] = "demo scale: width 0.25, 80x80, 500 it, warm start"
    table = markdown_table(seed_summary(long_table([d])), "dice")
    assert "| sifa (demo scale: width 0.25, 80x80, 500 it, warm start) | MR→CT | 1 |" in table


def test_published_numbers_use_sifa_compatible_dice_and_name_the_grid():
    # metrics_doc: sifa_dice = dice - 0.01, so the table shows 79.0 for a scan-grid Dice of 0.80
    d = {**metrics_doc("sifa_mr2ct", 0, [0.80] * 4), "_path": "x"}
    summary = seed_summary(long_table([d]))
    ref = {"sifa_mr2ct": {"source": "SIFA", "dice": {"MYO": 61.6}}}
    own = reference_section(summary, ref, {"mr": "synthetic", "ct": "synthetic"})
    assert "| sifa_mr2ct | sifa | own (synthetic) | SIFA | 79.0 / 61.6 / +17.4 | 79.0 / – / – | 79.0 / – / – |" in own
    assert "SIFA-compatible Dice" in own and "only when the run used the SIFA/PnP-AdaNet release grid" in own
    assert "| release |" in reference_section(summary, ref, {"ct": "sifa_release"})
    assert "| unknown |" in reference_section(summary, ref)


def _experiments(root):
    """MR->CT: source_only, translate_then_segment, sifa (demo scale), oracle; CT->MR: source_only
    and sifa only (no translate_then_segment there)."""
    up = [b + 0.05 for b in BASE]
    docs = [
        metrics_doc("source_only_mr2ct", 0, [0.1] * 4, [9.0] * 4, method="source_only"),
        metrics_doc("t2s_mr2ct", 0, BASE, [3.0, 3.0, 3.0, [float("nan"), 3.0]], method="translate_then_segment", translator="cyclegan_mr2ct", translator_kind="cyclegan"),
        metrics_doc("sifa_mr2ct", 0, up, [2.0] * 4, scale="demo scale: width 0.25, 80x80, 500 it, warm start"),
        metrics_doc("oracle_mr2ct", 0, [0.9] * 4, [1.0] * 4, method="oracle"),
        metrics_doc("source_only_ct2mr", 0, [0.2] * 4, method="source_only", source="ct", target="mr"),
        metrics_doc("sifa_ct2mr", 0, [0.6] * 4, source="ct", target="mr"),
    ]
    return [str(write_doc(root, d)) for d in docs]


def test_report_states_claims_and_writes_comparisons_csv(tmp_path):
    files = _experiments(tmp_path / "evaluation")
    out = tmp_path / "report"
    build_report(files, out, comparisons=[["oracle_mr2ct", "sifa_mr2ct"], ["sifa_mr2ct", "t2s_mr2ct"]])
    md = (out / "summary.md").read_text()
    assert "## Claims (paired differences, bootstrap 95% CI)" in md and "unit is the (volume, seed) pair" in md
    claims = md[md.index("## Claims"):]
    assert "| sifa_mr2ct | t2s_mr2ct | MR→CT | Dice | +0.050 | [+0.050, +0.050] | 4 (4 volumes × 1 seed) | 4 of 4 (sign test p 0.125) | sifa_mr2ct better: interval excludes 0 |" in claims
    assert "| sifa_mr2ct | t2s_mr2ct | MR→CT | ASSD (mm) | -1.000 | [-1.000, -1.000] | 3 (4 volumes × 1 seed, 1 dropped: ASSD undefined) | 3 of 3 (sign test p 0.25) |" in claims
    assert "| oracle_mr2ct | sifa_mr2ct | MR→CT | Dice |" in claims
    assert "sifa_ct2mr not compared with translate_then_segment: no translate_then_segment experiment for CT→MR." in claims
    # the scale note is in every table of reported numbers
    for key, title in METRIC_KEYS.items():
        if key.endswith("_last_k"):  # only for experiments with checkpoint snapshots (none here)
            assert f"## {title}\n" not in md
            continue
        section = md[md.index(f"## {title}\n"):]
        assert "| sifa (demo scale: width 0.25, 80x80, 500 it, warm start) | MR→CT |" in section.split("\n## ")[0]
    csv = pd.read_csv(out / "comparisons.csv", dtype={"class": str})
    pairs = list(dict.fromkeys(zip(csv["experiment_a"], csv["experiment_b"], strict=True)))
    assert pairs == [
        ("sifa_mr2ct", "t2s_mr2ct"),
        ("sifa_mr2ct", "source_only_mr2ct"),
        ("t2s_mr2ct", "source_only_mr2ct"),
        ("sifa_ct2mr", "source_only_ct2mr"),
        ("oracle_mr2ct", "sifa_mr2ct"),  # explicit; the explicit (sifa, t2s) is a default pair, stated once
    ]
    row = csv[(csv["experiment_a"] == "sifa_mr2ct") & (csv["experiment_b"] == "t2s_mr2ct") & (csv["metric"] == "assd_mm")].iloc[0]
    assert (row["n_pairs"], row["n_dropped"], row["mean_diff"], row["sign_test_p"], row["verdict"]) == (3, 1, -1.0, 0.25, "A better")
    assert set(csv["class"]) == {"mean", "MYO", "LVC"} and len(csv) == 5 * 4
    # The audit reads the tables whose header starts `method | direction`: the claims add none.
    cells = _parse_markdown(md)
    assert {section for section, _, _, _ in cells} == {t for k, t in METRIC_KEYS.items() if not k.endswith("_last_k")}
    assert len(cells) == 4 * 6  # metrics x experiments


def test_explicit_comparisons_that_cannot_be_made_are_errors(tmp_path):
    files = _experiments(tmp_path / "evaluation")
    with pytest.raises(ConfigError, match=r"report.comparisons\[0\]: 'sifa' is not an experiment of this report"):
        build_report(files, tmp_path / "r1", comparisons=[["sifa", "t2s_mr2ct"]])
    with pytest.raises(ConfigError, match=r"report.comparisons\[0\]: cannot pair sifa_ct2mr \(A\) with t2s_mr2ct \(B\): different targets"):
        build_report(files, tmp_path / "r2", comparisons=[["sifa_ct2mr", "t2s_mr2ct"]])


def test_report_without_adaptation_experiments_says_so(tmp_path):
    files = _experiments(tmp_path / "evaluation")[:1]
    build_report(files, tmp_path / "r")
    assert "No comparison: no adaptation experiment" in (tmp_path / "r" / "summary.md").read_text()
    assert (tmp_path / "r" / "comparisons.csv").read_text().startswith("experiment_a,experiment_b,target,metric,class,mean_diff")


def test_workflow_passes_comparisons_and_refuses_bad_pairs_when_planning(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import make_tiny_project

    train = {"iterations": 2}
    experiments = {
        "so_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": train, "scale": "demo scale: 2 it"},
        "oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0], "train": train},
        "so_ct2mr": {"method": "source_only", "source": "ct", "target": "mr", "seeds": [1], "train": train},
    }
    base = {"preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]}, "experiments": experiments}
    snakemake = str(Path(sys.executable).parent / "snakemake")

    def plan(comparisons):
        project = make_tiny_project(tmp_path / str(len(list(tmp_path.iterdir()))), {**base, "report": {"comparisons": comparisons}})
        return subprocess.run([snakemake, "results/report/summary.md", "-n", "-p", "--configfile", "config/tiny.yaml"], cwd=project, capture_output=True, text=True, timeout=300)

    ok = plan([["oracle_mr2ct", "so_mr2ct"]])
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "--comparisons '[[\"oracle_mr2ct\", \"so_mr2ct\"]]'" in ok.stdout and "--source-kinds" in ok.stdout
    assert "results/report/comparisons.csv" in ok.stdout
    for pair, message in (
        (["oracle_mr2ct", "sifa"], "report.comparisons[0]: 'sifa' is not in experiments"),
        (["oracle_mr2ct", "so_ct2mr"], "report.comparisons[0]: oracle_mr2ct and so_ct2mr have different targets"),
    ):
        bad = plan([pair])
        assert bad.returncode != 0 and message in bad.stdout + bad.stderr, bad.stdout[-2000:] + bad.stderr[-2000:]


def test_bar_plot_keeps_experiments_that_share_a_row_label_apart(tmp_path):
    """Two translate_then_segment runs on CycleGANs of one kind (a dev-tuning pair) have the same
    row label; the bar plot draws one group per experiment instead of failing on the shared label."""
    from PIL import Image

    root = tmp_path / "evaluation"
    docs = [
        metrics_doc(name, 0, [v] * 4, method="translate_then_segment", translator=name.replace("t2s_", ""), translator_kind="cyclegan")
        for name, v in (("t2s_cyclegan_mr2ct", 0.6), ("t2s_cyclegan_skip_mr2ct", 0.7))
    ]
    files = [str(write_doc(root, d)) for d in docs]
    build_report(files, tmp_path / "report")
    md = (tmp_path / "report" / "summary.md").read_text()
    assert md.count("| translate_then_segment (cyclegan) | MR→CT |") >= 2
    with Image.open(tmp_path / "report" / "dice_bar.png") as im:
        assert im.size[0] > 100


def _pooled(dice_myo: float, assd_myo: float) -> dict:
    return {
        "definition": "all test volumes concatenated along the slice axis (GLUA metric.py); medpy 0.4 dc/assd, voxels",
        "cases": ["c1", "c2", "c3", "c4"],
        "sifa_dice": {"MYO": dice_myo, "mean": dice_myo},
        "sifa_assd_vox": {"MYO": assd_myo, "mean": assd_myo},
    }


def test_pooled_section_states_glua_numbers_over_seeds_as_the_audit_reads_them(tmp_path):
    docs = [
        {**metrics_doc("glua_mr2ct", 0, BASE, method="glua", translator="adgan_mr2ct", translator_kind="adgan"), "pooled": _pooled(0.70, 3.0)},
        {**metrics_doc("glua_mr2ct", 1, BASE, method="glua", translator="adgan_mr2ct", translator_kind="adgan"), "pooled": _pooled(0.74, 5.0)},
        {**metrics_doc("sifa_mr2ct", 0, BASE), "pooled": _pooled(0.60, 4.0)},
        metrics_doc("oracle_mr2ct", 0, BASE, method="oracle"),  # written before pooled numbers existed: no row
    ]
    files = [str(write_doc(tmp_path / "evaluation", d)) for d in docs]
    build_report(files, tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    section = md[md.index("## Pooled over test volumes"):].split("\n## ")[0]
    assert "all test volumes concatenated along the slice axis (GLUA metric.py)" in section
    dice = section[section.index("### Pooled Dice"):section.index("### Pooled ASSD")]
    assert "| glua (adgan) | MR→CT | 2 | target labels: none | 0.720 ± 0.020 | 0.720 ± 0.020 |" in dice
    assert "| sifa | MR→CT | 1 | target labels: none | 0.600 ± – | 0.600 ± – |" in dice
    assert "oracle" not in section
    assert "| glua (adgan) | MR→CT | 2 | target labels: none | 4.000 ± 1.000 |" in section[section.index("### Pooled ASSD"):]
    # what the audit reads back (xmodseg.provenance.audit checks every cell against recomputed documents)
    cells = _pooled_cells(md)
    assert cells[("Pooled Dice", "glua (adgan)", "MR→CT")]["MYO"] == "0.720 ± 0.020"
    assert cells[("Pooled ASSD (voxels)", "sifa", "MR→CT")]["labels"] == "target labels: none"
    assert len(cells) == 2 * 2


def test_adaptation_is_compared_with_translate_then_segment_on_the_same_translator(tmp_path):
    docs = [
        metrics_doc("t2s_cyclegan_mr2ct", 0, BASE, method="translate_then_segment", translator="cyclegan_mr2ct", translator_kind="cyclegan"),
        metrics_doc("t2s_adgan_mr2ct", 0, BASE, method="translate_then_segment", translator="adgan_mr2ct", translator_kind="adgan"),
        metrics_doc("glua_mr2ct", 0, [b + 0.02 for b in BASE], method="glua", translator="adgan_mr2ct", translator_kind="adgan"),
        metrics_doc("sifa_mr2ct", 0, BASE),
    ]
    files = [str(write_doc(tmp_path / "evaluation", d)) for d in docs]
    build_report(files, tmp_path / "r")
    csv = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    pairs = set(zip(csv["experiment_a"], csv["experiment_b"], strict=True))
    assert ("glua_mr2ct", "t2s_adgan_mr2ct") in pairs and ("glua_mr2ct", "t2s_cyclegan_mr2ct") not in pairs
    assert ("sifa_mr2ct", "t2s_cyclegan_mr2ct") in pairs  # no translator of its own: the first one


def test_sweep_section_plots_dice_against_the_recorded_budget(tmp_path):
    docs, files = [], []
    for name, n, dice in (("a16", 16, 0.8), ("a4", 4, 0.6), ("a8", 8, 0.7)):
        for seed, shift in ((0, -0.01), (1, 0.01)):
            d = metrics_doc(name, seed, [dice + shift] * 4, method="mkd")
            d["provenance"]["label_budget"] = {"target": "subset", "n_labelled": 4, "n_train": 16, "assistant": "mr", "n_assistant": n, "n_assistant_train": 16}
            docs.append(d)
            files.append(str(write_doc(tmp_path / "evaluation", d)))
    sweep = {"title": "MKD: assistant volumes", "x": "n_assistant", "lines": {"mkd": ["a16", "a4", "a8"]}}
    build_report(files, tmp_path / "report", sweeps=[sweep])
    md = (tmp_path / "report" / "summary.md").read_text()
    rows = [line for line in md.split("## Label-budget sweeps")[1].splitlines() if line.startswith("| mkd |")]
    assert [r.split("|")[2].strip() for r in rows] == ["4", "8", "16"]  # sorted by the recorded budget
    assert rows[0].split("|")[4].strip() == "0.600 ± 0.010" and rows[0].split("|")[5].strip() == "2"
    assert (tmp_path / "report" / "sweeps.png").stat().st_size > 1000
    unrecorded = [{**d, "provenance": {k: v for k, v in d["provenance"].items() if k != "label_budget"}} for d in docs]
    files = [str(write_doc(tmp_path / "bad", d)) for d in unrecorded]
    with pytest.raises(ConfigError, match="a16 has no metrics or no single recorded n_assistant"):
        build_report(files, tmp_path / "report2", sweeps=[sweep])

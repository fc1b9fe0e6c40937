"""The report's headline table, per-volume values, training time and comparison grids, from
hand-made metrics documents (no workflow run)."""

from __future__ import annotations

import json
import math

import numpy as np

from tests.unit.reporting.test_compare import BASE, metrics_doc, write_doc
from xmodseg.artifacts.metrics import MetricsDoc
from xmodseg.reporting.case_grid import chosen_cases, grids_section
from xmodseg.reporting.headline import headline_rows
from xmodseg.reporting.per_case import per_case_section, per_case_table
from xmodseg.reporting.report import build_report, long_table, seed_summary
from xmodseg.reporting.training_record import sidecars, time_section


def _docs():
    return [
        MetricsDoc.coerce({**d, "_path": d["experiment"]["name"]})
        for d in (
            metrics_doc("source_only_mr2ct", 0, [0.2] * 4, method="source_only"),
            metrics_doc("sifa_mr2ct", 0, BASE),
            metrics_doc("sifa_mr2ct", 1, [b + 0.1 for b in BASE]),
            metrics_doc("oracle_mr2ct", 0, [0.9] * 4, method="oracle"),
            metrics_doc("co_da_ct", 0, [0.8] * 4, method="co_da", source="ct", target="ct"),
        )
    ]


def test_headline_states_gap_closed_spread_unit_and_interval():
    rows = {r["experiment"]: r for r in headline_rows(seed_summary(long_table(_docs())), _docs())}
    sifa = rows["sifa_mr2ct"]
    assert math.isclose(sifa["dice"], 0.7625) and sifa["seeds"] == 2 and sifa["spread_over"] == "seeds" and math.isclose(sifa["spread"], 0.05)
    assert math.isclose(sifa["gap_closed"], 100 * (0.7625 - 0.2) / (0.9 - 0.2))
    low, high = sifa["ci"]
    assert 0.6 < low < 0.7625 < high < 0.9  # the bootstrap over 8 (volume, seed) values
    assert rows["source_only_mr2ct"]["gap_closed"] == 0.0 and rows["oracle_mr2ct"]["gap_closed"] == 100.0
    assert rows["source_only_mr2ct"]["spread_over"] == "volumes" and rows["source_only_mr2ct"]["ci"] == (0.2, 0.2)
    assert math.isnan(rows["co_da_ct"]["gap_closed"])  # one modality: no domain gap to close
    # a labelled-subset oracle listed first is not the reference: the all-label oracle is
    subset = MetricsDoc.coerce({**metrics_doc("oracle_subset_mr2ct", 0, [0.5] * 4, method="oracle", labels={"target": "subset", "n_labelled": 4}), "_path": "s"})
    again = {r["experiment"]: r for r in headline_rows(seed_summary(long_table([subset, *_docs()])), [subset, *_docs()])}
    assert math.isclose(again["sifa_mr2ct"]["gap_closed"], sifa["gap_closed"]) and math.isclose(again["oracle_subset_mr2ct"]["gap_closed"], 100 * 0.3 / 0.7)
    # an oracle no better than source_only leaves the gap undefined instead of dividing by <= 0
    flat = [d for d in _docs() if d.name != "oracle_mr2ct"] + [MetricsDoc.coerce({**metrics_doc("oracle_mr2ct", 0, [0.2] * 4, method="oracle"), "_path": "o"})]
    assert math.isnan({r["experiment"]: r for r in headline_rows(seed_summary(long_table(flat)), flat)}["sifa_mr2ct"]["gap_closed"])


def test_per_volume_values_in_csv_and_table_with_the_worst_volume():
    docs = _docs()
    table = per_case_table(docs)
    assert len(table) == 5 * 4 * 4 * 3  # runs x volumes x metrics x (2 classes + mean)
    row = table[(table["experiment"] == "sifa_mr2ct") & (table["seed"] == 1) & (table["case"] == "1019") & (table["metric"] == "dice") & (table["class"] == "mean")]
    assert math.isclose(float(row["value"].iloc[0]), 0.7)
    md = per_case_section(docs)
    assert "| test volume | source_only_mr2ct | sifa_mr2ct | oracle_mr2ct |" in md and "**CT**" in md
    assert "| 1019 | 0.200 | 0.650 | 0.900 |" in md  # sifa: mean of seeds 0.60 and 0.70
    assert "| worst | 0.200 | 0.650 | 0.900 |" in md


def test_training_time_comes_from_the_sidecars_and_says_when_one_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs = _docs()[:3]
    for d, seconds in zip(docs[1:], (120.0, 240.0), strict=True):
        model = f"models/{d.name}/seed{d.seed}/model.pt"
        d.provenance["model"] = model
        (tmp_path / model).parent.mkdir(parents=True)
        side = {"seed": d.seed, "params": {}, "data": {}, "config_hash": "h", "model_sha256": "s", "method": "sifa",
                "loop": {"iterations_done": 500, "resumed_from": 0, "seconds": seconds, "seconds_per_iteration": seconds / 500, "stopped_early": False, "last_losses": {}},
                "loss_curve": {"iterations": [250, 500], "terms": {"seg": [1.0, 0.5]}}, "device": {"device": "cpu"}}
        (tmp_path / model).with_suffix(".json").write_text(json.dumps(side))
    found = sidecars(docs)
    assert found[("source_only_mr2ct", 0)] is None and found[("sifa_mr2ct", 1)].loop["seconds"] == 240.0
    md = time_section(docs, found)
    assert "| sifa_mr2ct | 2 | 500 | 0.360 | 3.0 | cpu |" in md and "| source_only_mr2ct | 1 | – | – | – | no sidecar |" in md


def test_grid_picks_the_median_and_worst_volume_and_draws_from_the_recorded_files(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    docs = _docs()[:4]
    assert chosen_cases(docs) == [("median", "1003"), ("worst", "1019")]  # BASE ranks 1019 < 1003 < 1020 < 1014
    # the files evaluation records per case: the cache (manifest, image, label) and the prediction
    cache = tmp_path / "cache"
    cache.mkdir()
    cases = []
    for i, case in enumerate(["1003", "1014", "1019", "1020"]):
        label = np.zeros((3, 8, 8), np.uint8)
        label[1, 2:6, 2:6] = 1 + i % 2
        np.save(cache / f"{case}_label.npy", label)
        np.save(cache / f"{case}_image.npy", np.random.default_rng(i).random((3, 8, 8)).astype(np.float32))
        np.savez(tmp_path / f"{case}_pred.npz", prediction=label)
        cases.append({"case": case, "split": "test", "image": f"{case}_image.npy", "label": f"{case}_label.npy", "shape": [3, 8, 8],
                      "image_sha256": "i", "label_sha256": "l", "classes_present": [0, 1 + i % 2]})
    manifest = {"format": 1, "dataset": "toy", "modality": "ct", "kind": "ct", "class_names": ["background", "MYO", "LVC"], "slice_axis": "axial", "cases": cases}
    (cache / "manifest.json").write_text(json.dumps(manifest))
    for d in docs:
        d.provenance["data_manifest"] = "cache/manifest.json"
        for c in d.cases:
            c["ground_truth_preprocessed"] = f"cache/{c['case']}_label.npy"
            c["prediction_preprocessed"] = f"{c['case']}_pred.npz"
    md = grids_section(docs, tmp_path)  # the hand-made manifest satisfies the real reader
    assert "MR→CT: median volume 1003, worst volume 1019." in md, md
    with Image.open(tmp_path / "grid_mr2ct.png") as im:
        assert im.size[1] > im.size[0] > 200  # 4 rows (ground truth + 3 experiments) x 2 volumes
    # without the recorded files the figure and the note say so instead of failing the report
    (tmp_path / "cache" / "manifest.json").unlink()
    assert "MR→CT: not drawn, a prediction or cached image could not be read" in grids_section(docs, tmp_path)


def test_build_report_writes_every_new_output(tmp_path):
    files = [str(write_doc(tmp_path / "evaluation", d)) for d in (metrics_doc("sifa_mr2ct", 0, BASE), metrics_doc("oracle_mr2ct", 0, [0.9] * 4, method="oracle"))]
    build_report(files, tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    for heading in ("## Headline", "## Per test volume", "## Comparison grids", "## Learning curves"):
        assert heading in md, heading
    assert md.index("## Headline") < md.index("## Dice\n")  # the answer first
    assert "No model sidecar of these experiments holds a loss history" in md and "## Training time" not in md
    for f in ("per_case.csv", "learning_curves.png", "grid_mr2ct.png"):
        assert (tmp_path / "r" / f).stat().st_size > 100, f

"""Paired comparison of two experiments (xmodseg.reporting.compare, `xmodseg compare`) on hand-made
per-seed metrics files whose differences are known."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from xmodseg.cli import main
from xmodseg.errors import InputDataError
from xmodseg.reporting.compare import bootstrap_interval, compare_docs, compare_files, format_comparison, sign_test

CLASSES = ["MYO", "LVC"]
CASES = ["1003", "1014", "1019", "1020"]


def _per_class(value: float | Sequence[float]) -> dict[str, float]:
    values = list(value) if isinstance(value, Sequence) else [value] * len(CLASSES)
    return dict(zip(CLASSES, (float(v) for v in values), strict=True))


def _summary(cases: list[dict], key: str) -> dict:
    def stats(values: list[float]) -> dict:
        arr = np.asarray(values, dtype=float)
        undef = int(np.isnan(arr).sum())
        mean, std = (math.nan, math.nan) if undef else (float(arr.mean()), float(arr.std()))
        return {"mean": mean, "std": std, "n": len(values), "n_undefined": undef}

    out = {c: stats([case[key][c] for case in cases]) for c in CLASSES}
    out["mean"] = {**stats([float(np.mean([case[key][c] for c in CLASSES])) for case in cases]), "mean": float(np.mean([out[c]["mean"] for c in CLASSES]))}
    return out


def metrics_doc(name: str, seed: int, dice: Sequence, assd: Sequence | None = None, *, method: str = "sifa", source: str = "mr",
                target: str = "ct", cases: Sequence[str] = CASES, **experiment) -> dict:
    """A per-seed metrics.json as `xmodseg evaluate` writes it; `dice`/`assd`: per case, one value
    for every class or one value per class. The SIFA-compatible values are Dice - 0.01 and ASSD x 2."""
    assd = assd if assd is not None else [2.0] * len(cases)
    rows = []
    for case, d, a in zip(cases, dice, assd, strict=True):
        dd, aa = _per_class(d), _per_class(a)
        rows.append({
            "case": case,
            "ground_truth_sha256": f"{case}-gt".ljust(64, "0"),
            "dice": dd,
            "assd_mm": aa,
            "sifa_dice": {c: v - 0.01 for c, v in dd.items()},
            "sifa_assd_vox": {c: 2 * v for c, v in aa.items()},
        })
    return {
        "experiment": {"name": name, "dataset": "toy", "method": method, "source": source, "target": target, "seed": seed, **experiment},
        "class_names": CLASSES,
        "summary": {k: _summary(rows, k) for k in ("dice", "assd_mm", "sifa_dice", "sifa_assd_vox")},
        "cases": rows,
        "provenance": {"model_sha256": "a" * 64, "data_manifest_sha256": "b" * 64, "git": {"commit": None, "dirty": False}},
    }


def write_doc(root: Path, doc: dict, dataset: str = "toy") -> Path:
    p = root / dataset / doc["experiment"]["name"] / f"seed{doc['experiment']['seed']}" / "metrics.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc))  # NaN written as the NaN literal, as evaluate does
    return p


def with_path(doc: dict, path: str = "mem") -> dict:
    return {**doc, "_path": f"{path}/{doc['experiment']['name']}/seed{doc['experiment']['seed']}"}


BASE = [0.70, 0.80, 0.60, 0.75]


def test_constant_difference_collapses_the_interval():
    a = [with_path(metrics_doc("sifa", s, [b + 0.05 for b in BASE], [1.0, 2.0, 3.0, 4.0])) for s in (0, 1)]
    b = [with_path(metrics_doc("t2s", s, BASE, [2.0, 3.0, 4.0, 5.0], method="translate_then_segment")) for s in (0, 1)]
    c = compare_docs(a, b)
    dice, assd = c.get("dice"), c.get("assd_mm")
    assert dice.n_pairs == 8 and c.seeds == [0, 1] and c.cases == CASES and dice.n_a_better == 8
    assert math.isclose(dice.mean_diff, 0.05, abs_tol=1e-12)
    assert math.isclose(dice.ci_low, 0.05, abs_tol=1e-12) and math.isclose(dice.ci_high, 0.05, abs_tol=1e-12)
    assert dice.verdict == "A better"
    # ASSD: A is 1 mm lower on every pair, i.e. better although A - B < 0
    assert assd.mean_diff == -1.0 and assd.ci_low == assd.ci_high == -1.0 and assd.verdict == "A better" and assd.n_a_better == 8
    assert {d.cls for d in c.differences if d.metric == "dice"} == {"mean", *CLASSES}
    # swapping A and B mirrors every number and the verdict
    r = compare_docs(b, a)
    assert math.isclose(r.get("dice").ci_high, -0.05, abs_tol=1e-12) and r.get("dice").verdict == "B better"


def test_symmetric_differences_contain_zero_and_are_reproducible():
    a = [with_path(metrics_doc("sifa", 0, [b + d for b, d in zip(BASE, [0.1, -0.1, 0.2, -0.2], strict=True)]))]
    b = [with_path(metrics_doc("t2s", 0, BASE))]
    c = compare_docs(a, b)
    d = c.get("dice")
    assert math.isclose(d.mean_diff, 0.0, abs_tol=1e-12) and d.ci_low < 0 < d.ci_high
    assert -0.2 <= d.ci_low and d.ci_high <= 0.2
    assert d.verdict == "no detectable difference" and d.n_a_better == 2 and d.n_b_better == 2 and d.sign_test_p == 1.0
    assert compare_docs(a, b).get("dice") == d  # fixed RNG seed: same interval every time
    # equal ASSD everywhere: the interval is exactly 0
    assert (c.get("assd_mm").ci_low, c.get("assd_mm").ci_high, c.get("assd_mm").verdict) == (0.0, 0.0, "no detectable difference")


def test_bootstrap_interval_of_two_values():
    # Resample means of [0, 1] are 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5 % and
    # 97.5 % percentiles are 0 and 1.
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    low, high = bootstrap_interval(np.arange(20.0))
    assert 6.0 < low < 9.5 < high < 13.0  # mean 9.5, standard error ~1.3
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_sign_test_and_no_verdict_from_one_pair():
    assert sign_test(4, 0) == 0.125 and sign_test(0, 4) == 0.125 and sign_test(2, 2) == 1.0
    assert sign_test(8, 0) == 2 / 256 and math.isclose(sign_test(9, 1), 2 * 11 / 1024) and math.isnan(sign_test(0, 0))
    one = compare_docs([with_path(metrics_doc("sifa", 0, [0.8], cases=["1003"]))], [with_path(metrics_doc("t2s", 0, [0.7], cases=["1003"]))])
    d = one.get("dice")
    assert d.n_pairs == 1 and math.isnan(d.ci_low) and d.verdict == "too few pairs for an interval (n = 1)"


def test_undefined_assd_pair_is_dropped_and_counted(tmp_path):
    assd_a = [1.0, [math.nan, 1.0], 1.0, 1.0]  # case 1014: MYO ASSD undefined (an empty mask)
    fa = write_doc(tmp_path, metrics_doc("sifa", 0, BASE, assd_a))
    fb = write_doc(tmp_path, metrics_doc("t2s", 0, BASE, [2.0] * 4))
    c = compare_files([fa], [fb])
    assd, dice = c.get("assd_mm"), c.get("dice")
    assert (assd.n_pairs, assd.n_dropped, assd.mean_diff) == (3, 1, -1.0)
    assert (dice.n_pairs, dice.n_dropped) == (4, 0)
    out = format_comparison(c)
    assert "1 pair(s) dropped from ASSD (mm) mean: ASSD undefined" in out


def test_refuses_pairs_that_are_not_the_same_volumes():
    a = [with_path(metrics_doc("sifa", 0, BASE))]
    other_cases = [with_path(metrics_doc("t2s", 0, BASE, cases=["1003", "1014", "1019", "1099"]))]
    with pytest.raises(InputDataError, match=r"sifa \(A\) with t2s \(B\).*only in sifa: \['1020'\], only in t2s: \['1099'\]"):
        compare_docs(a, other_cases)
    with pytest.raises(InputDataError, match=r"different targets \(ct vs mr\)"):
        compare_docs(a, [with_path(metrics_doc("so_ct2mr", 0, BASE, source="ct", target="mr"))])
    with pytest.raises(InputDataError, match=r"no seed in common \(sifa has seeds \[0\], t2s has \[1, 2\]\)"):
        compare_docs(a, [with_path(metrics_doc("t2s", s, BASE)) for s in (1, 2)])
    changed_gt = with_path(metrics_doc("t2s", 0, BASE))
    changed_gt["cases"][2]["ground_truth_sha256"] = "f" * 64
    with pytest.raises(InputDataError, match="case 1019 has different ground truth"):
        compare_docs(a, [changed_gt])


def test_seeds_not_in_both_are_left_out_and_named():
    a = [with_path(metrics_doc("sifa", s, BASE)) for s in (0, 1, 2)]
    b = [with_path(metrics_doc("t2s", s, BASE)) for s in (1, 2, 3)]
    c = compare_docs(a, b)
    assert c.seeds == [1, 2] and c.seeds_only_a == [0] and c.seeds_only_b == [3] and c.get("dice").n_pairs == 8
    assert "seeds not in both (not used): sifa [0], t2s [3]" in format_comparison(c)


def test_cli_compare_prints_writes_json_and_refuses_bad_input(tmp_path, capsys):
    root = tmp_path / "results" / "evaluation"
    for s in (0, 1):
        write_doc(root, metrics_doc("sifa_mr2ct", s, [b + 0.05 for b in BASE]))
        write_doc(root, metrics_doc("t2s_mr2ct", s, BASE, method="translate_then_segment"))
    out_json = tmp_path / "cmp.json"
    assert main(["compare", "sifa_mr2ct", "t2s_mr2ct", "--metrics-root", str(root), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "A = sifa_mr2ct (MR→CT), B = t2s_mr2ct (MR→CT)" in printed and "seeds 0, 1" in printed
    assert re.search(r"\nDice +mean +\+0\.050 +\[\+0\.050, \+0\.050\] +8 +8/8 +0\.00781 +sifa_mr2ct better: interval excludes 0\n", printed)
    doc = json.loads(out_json.read_text())
    assert doc["a"] == "sifa_mr2ct" and doc["seeds"] == [0, 1] and doc["differences"][0]["verdict"] == "A better"
    assert doc["differences"][0]["n_pairs"] == 8 and "10000 resamples" in doc["statistic"]
    # an explicit metrics.json path for one side
    path_b = str(root / "toy" / "t2s_mr2ct" / "seed1" / "metrics.json")
    assert main(["compare", "sifa_mr2ct", path_b, "--metrics-root", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "; seeds 1\n" in printed and "seeds not in both (not used): sifa_mr2ct [0], t2s_mr2ct []" in printed
    # unknown name, then a name on two data sets
    assert main(["compare", "nope", "t2s_mr2ct", "--metrics-root", str(root)]) == 2
    assert "nope: not a file, and no" in capsys.readouterr().err
    write_doc(root, metrics_doc("sifa_mr2ct", 0, BASE), dataset="toy2")
    assert main(["compare", "sifa_mr2ct", "t2s_mr2ct", "--metrics-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "several data sets" in err and "toy, toy2" in err and "--dataset" in err
    assert main(["compare", "sifa_mr2ct", "t2s_mr2ct", "--metrics-root", str(root), "--dataset", "toy"]) == 0
    capsys.readouterr()
    # a file that is not a metrics file
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["compare", str(bad), "t2s_mr2ct", "--metrics-root", str(root), "--dataset", "toy"]) == 2
    assert "not a per-seed metrics.json" in capsys.readouterr().err

"""The binned loss history a model sidecar keeps for the report's learning curves."""

from __future__ import annotations

import json

from xmodseg.training.loop import HISTORY, loss_curve


def _write(folder, records, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HISTORY).write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_history_is_binned_to_at_most_max_points_with_each_bins_last_iteration(tmp_path):
    records = [{"iteration": 20 * (i + 1), "s_per_it": 0.1, "seg": float(i), "adv": 1.0} for i in range(250)]
    records.insert(100, {"event": "resumed", "iteration": 2000})  # events are not loss records
    _write(tmp_path, records, tail='{"iteration": 5020, "seg": 1')  # a line cut by a kill
    curve = loss_curve(tmp_path, max_points=100)
    assert len(curve["iterations"]) == 100 and curve["iterations"][-1] == 5000
    assert set(curve["terms"]) == {"seg", "adv"}  # s_per_it is timing, not a loss
    seg = curve["terms"]["seg"]
    assert seg[0] == 0.5 and seg[-1] == 248.0  # bins of 2 or 3 records: 250 records into 100 bins
    assert curve["iterations"][0] == 40 and all(a < b for a, b in zip(curve["iterations"], curve["iterations"][1:]))


def test_short_histories_keep_every_record_and_missing_terms_are_null(tmp_path):
    _write(tmp_path, [{"iteration": 1, "seg": 2.0}, {"iteration": 2, "seg": 1.0, "kd": 0.5}])
    assert loss_curve(tmp_path) == {"iterations": [1, 2], "terms": {"seg": [2.0, 1.0], "kd": [None, 0.5]}}
    assert loss_curve(tmp_path / "absent") is None
    _write(tmp_path / "events_only", [{"event": "resumed", "iteration": 3}])
    assert loss_curve(tmp_path / "events_only") is None

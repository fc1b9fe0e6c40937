"""The audit checks every declared input a sidecar records and names the role of a broken one; the
report states each experiment's label budget on every row. Small hand-made files, no training."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.reporting.test_compare import metrics_doc, write_doc
from xmodseg.layout import Layout
from xmodseg.provenance import audit as audit_mod
from xmodseg.provenance.audit import _dirty_note, _git_link, _parse_markdown
from xmodseg.reporting.report import build_report, label_budget
from xmodseg.training.inputs import input_sha256

DS = "d"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache(repo: Path, folder: str, splits: dict[str, str]) -> Path:
    """A cache folder: one cached image per case and the manifest listing it with its sha256."""
    root = repo / folder
    root.mkdir(parents=True)
    cases = []
    for case, split in splits.items():
        np.save(root / f"{case}_image.npy", np.full((2, 3, 3), int(case) % 7, dtype=np.float32))
        cases.append({"case": case, "split": split, "image": f"{case}_image.npy", "image_sha256": _sha(root / f"{case}_image.npy")})
    (root / "manifest.json").write_text(json.dumps({"cases": cases}))
    return root


def _project(repo: Path) -> tuple[str, dict[str, Path]]:
    """An evaluated model whose sidecar records four inputs: two files, a cache folder and another
    folder."""
    L = Layout(DS)
    files = {
        "warm_start": repo / L.translator_model("cyclegan_mr2ct", 0),
        "teacher": repo / L.model("oracle_mr2ct", 0),
    }
    for role, p in files.items():
        p.parent.mkdir(parents=True)
        p.write_bytes(f"weights of the {role}".encode())
    files["translated"] = _cache(repo, L.translated("cyclegan_mr2ct", 0), {"1001": "train", "1002": "train"})
    files["bundle"] = repo / "results/bundle"
    (files["bundle"] / "sub").mkdir(parents=True)
    (files["bundle"] / "a.txt").write_text("a")
    (files["bundle"] / "sub" / "b.txt").write_text("b")
    target = _cache(repo, L.prepared("ct"), {"1003": "test"})
    model = repo / L.model("toy_mr2ct", 0)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"the recorded model")
    inputs = {
        role: {"path": p.relative_to(repo).as_posix(), "sha256": _sha(p / "manifest.json" if (p / "manifest.json").is_file() else p) if role != "bundle" else input_sha256(p)}
        for role, p in files.items()
    }
    (repo / L.sidecar("toy_mr2ct", 0)).write_text(json.dumps({"model_sha256": _sha(model), "inputs": inputs}))
    metrics = L.seed_metrics("toy_mr2ct", 0)
    (repo / metrics).parent.mkdir(parents=True)
    prov = {
        "model": L.model("toy_mr2ct", 0),
        "model_sha256": _sha(model),
        "data_manifest": L.prepared("ct") + "/manifest.json",
        "data_manifest_sha256": _sha(target / "manifest.json"),
    }
    (repo / metrics).write_text(json.dumps({"experiment": {"name": "toy_mr2ct", "dataset": DS}, "provenance": prov, "cases": [], "class_names": ["x"]}))
    return metrics, files


def _links(repo: Path, metrics: str, **kw) -> dict[str, audit_mod.Link]:
    return {lk.name: lk for lk in audit_mod.audit(metrics, repo=repo, **kw).links[metrics]}


@pytest.fixture
def no_values(monkeypatch):
    monkeypatch.setattr(audit_mod, "_recomputed_doc", lambda metrics, path, repo: (None, []))  # values: tests/workflow/test_provenance.py


def test_intact_inputs_pass_and_are_named(tmp_path, no_values):
    metrics, files = _project(tmp_path)
    link = _links(tmp_path, metrics)["inputs"]
    assert link.ok, link.detail
    assert all(f"{role} {p.relative_to(tmp_path).as_posix()} sha256 " in link.detail for role, p in files.items())


@pytest.mark.parametrize(
    ("role", "tamper", "named"),
    [
        ("teacher", lambda p: p.write_bytes(p.read_bytes() + b"\0"), "model.pt: sha256"),
        ("warm_start", lambda p: p.unlink(), "model.pt is missing"),
        ("translated", lambda p: (p / "manifest.json").write_text((p / "manifest.json").read_text() + " "), "manifest.json: sha256"),
        ("translated", lambda p: np.save(p / "1002_image.npy", np.zeros((2, 3, 3), np.float32)), "1002_image.npy: sha256"),
        ("bundle", lambda p: (p / "sub" / "b.txt").write_text("c"), "folder sha256"),
    ],
)
def test_a_tampered_input_breaks_the_inputs_link_naming_its_role_and_file(tmp_path, no_values, role, tamper, named):
    metrics, files = _project(tmp_path)
    tamper(files[role])
    links = _links(tmp_path, metrics)
    assert not links["inputs"].ok
    problems = links["inputs"].detail.split("; ")
    assert len(problems) == 1 and problems[0].startswith(f"input '{role}'") and named in problems[0], problems
    assert files[role].relative_to(tmp_path).as_posix() in problems[0]
    assert links["model"].ok  # the model itself is intact: its own link stays ok


def test_reinfer_still_refuses_a_model_whose_link_is_broken(tmp_path, no_values, monkeypatch):
    from xmodseg.nn import networks

    monkeypatch.setattr(networks, "load_model", lambda *a: pytest.fail("a tampered model.pt was loaded"))
    metrics, _ = _project(tmp_path)
    model = tmp_path / Layout(DS).model("toy_mr2ct", 0)
    model.write_bytes(b"a swapped payload")
    links = _links(tmp_path, metrics, reinfer=True)
    assert not links["reinfer"].ok and "model link is broken" in links["reinfer"].detail


def test_the_git_link_lists_the_files_a_dirty_run_had_changed(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "a")
    head = git("rev-parse", "HEAD").strip()
    record = {"commit": head, "dirty": True, "dirty_files": ["src/a.py", "config/b.yaml"], "dirty_count": 5}
    link = _git_link([record], tmp_path)
    assert link.ok and link.detail == f"{head[:12]} (workspace was dirty at run time: src/a.py, config/b.yaml and 3 more)"
    assert _dirty_note({"dirty": True}) == "workspace was dirty at run time"  # older records list no files
    assert _git_link([{**record, "dirty": False}], tmp_path).detail == head[:12]


# ---- the report's label budget column ----------------------------------------------------------------


def test_every_report_row_states_the_label_budget_and_the_numbers_do_not_change(tmp_path):
    subset = metrics_doc("semi_mr2ct", 0, [0.7] * 4, method="oracle", label="semi", labels={"target": "subset", "fraction": 0.25, "seed": 3, "assistant": "mr"})
    drawn = {"target": "subset", "cases": ["1001", "1004", "1007", "1011"], "n_labelled": 4, "n_train": 16, "seed": 3, "fraction": 0.25, "assistant": "mr"}
    subset["provenance"]["label_budget"] = drawn  # evaluation copies the sidecar's `labels` here
    listed = metrics_doc("listed_mr2ct", 0, [0.7] * 4, method="oracle", label="listed", labels={"target": "subset", "cases": ["1002", "1005"]})
    listed["provenance"]["label_budget"] = {**drawn, "cases": ["1002", "1005"], "n_labelled": 2, "seed": 0, "fraction": None, "assistant": None}
    assisted = metrics_doc("mkd_mr2ct", 0, [0.8] * 4, method="mkd", label="assisted",
                           labels={"target": "subset", "fraction": 0.25, "seed": 3, "assistant": "mr", "assistant_volumes": 8})
    assisted["provenance"]["label_budget"] = {**drawn, "assistant_cases": [str(1001 + i) for i in range(8)], "n_assistant": 8, "n_assistant_train": 16}
    docs = [
        metrics_doc("source_only_mr2ct", 0, [0.5] * 4, method="source_only"),  # no labels block: the method says none
        metrics_doc("oracle_mr2ct", 0, [0.9] * 4, method="oracle"),  # declares target labels: all
        subset,
        listed,
        assisted,
    ]
    expected = {
        "source_only_mr2ct": "target labels: none",
        "oracle_mr2ct": "target labels: all",
        "semi_mr2ct": "target labels: subset 4/16 (seed 3); assistant: mr",
        "listed_mr2ct": "target labels: subset 2/16 (cases 1002, 1005)",
        "mkd_mr2ct": "target labels: subset 4/16 (seed 3); assistant: mr 8/16",
    }
    assert {d["experiment"]["name"]: label_budget(d) for d in docs} == expected
    no_record = {**listed, "provenance": {k: v for k, v in listed["provenance"].items() if k != "label_budget"}}
    assert label_budget(no_record) == "target labels: subset 2 (cases 1002, 1005)"  # the config block alone
    files = [str(write_doc(tmp_path / "evaluation", d)) for d in docs]
    build_report(files, tmp_path / "report")
    csv = pd.read_csv(tmp_path / "report" / "summary.csv", dtype=str, keep_default_na=False)
    assert {e: set(csv.loc[csv["experiment"] == e, "labels"]) for e in expected} == {e: {v} for e, v in expected.items()}
    cells = _parse_markdown((tmp_path / "report" / "summary.md").read_text())
    assert len(cells) == 4 * len(docs)  # every metric table has every experiment, and every row its budget
    rows = {"source_only": "source_only_mr2ct", "oracle": "oracle_mr2ct", "semi": "semi_mr2ct", "listed": "listed_mr2ct", "assisted": "mkd_mr2ct"}
    assert all(row["labels"] == expected[rows[method]] for (_, method, _, _), row in cells.items())
    # the numbers are those of a report without the column
    plain = [str(write_doc(tmp_path / "plain", {**d, "experiment": {k: v for k, v in d["experiment"].items() if k != "labels"}})) for d in docs]
    build_report(plain, tmp_path / "plain_report")
    before = pd.read_csv(tmp_path / "plain_report" / "summary.csv", dtype=str, keep_default_na=False)
    numbers = ["experiment", "metric", "class", "mean", "std_over_seeds", "n_seeds", "volume_std", "n_volumes", "n_undefined"]
    assert csv[numbers].equals(before[numbers])

"""Issue 17's "done when": a new method is its module plus a config entry. A toy distillation method
with a declared input (another experiment's model) and a target-label subset is dropped into
`xmodseg/methods/` as a module, named in a workflow config, and trains, evaluates, is recorded and
audits, with no other file of the package changed; a tampered teacher breaks the audit's inputs link."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_tiny_project
from tests.workflow.test_provenance import BIN, CONFIG, DS, audit, run, snakemake, xmodseg
from tests.workflow.test_workflow import TRAIN
from xmodseg import methods as methods_package
from xmodseg.hashing import sha256_file
from xmodseg.layout import Layout
from xmodseg.preprocess.pipeline import load_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

MODULE = "toy_distill"
TEACHER, TOY = "teacher_mr2ct", "toy_mr2ct"
L = Layout(DS)

# The whole method: what a contributor writes. Nothing else in the package knows its name.
TOY_SOURCE = '''"""Toy distillation (written and removed by tests/workflow/test_toy_method.py): a student U-Net trained
with Dice+CE on the source labels and on the labelled target subset, and to match a teacher model's
softmax on every target training image (labelled or not)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.artifacts.model_file import ModelFile
from xmodseg.errors import ConfigError
from xmodseg.methods import register
from xmodseg.methods.base import DataNeeds, InputSpec, SegmentationMethod, TrainData, set_requires_grad
from xmodseg.nn import networks
from xmodseg.nn.ignore_label import DiceCE
from xmodseg.training.device import Precision
from xmodseg.training.params import TrainParams, doc


@dataclass(frozen=True, kw_only=True)
class ToyDistillParams(TrainParams):
    lr: float = field(default=1e-3, metadata=doc("Adam learning rate"))
    batch_size: int = field(default=2, metadata=doc("slices per set (source, labelled target, target images) per iteration"))
    distill_weight: float = field(default=1.0, metadata=doc("weight of the KL term to the teacher's softmax"))
    network: dict[str, Any] = field(default_factory=dict, metadata=doc("MONAI UNet arguments"))


@register
class ToyDistill(SegmentationMethod):
    name: ClassVar[str] = "toy_distill"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=True, source_labels=True, target_images=True, target_labels=True)
    inputs: ClassVar[Mapping[str, InputSpec]] = {
        "teacher": InputSpec("experiment_model", description="a trained segmenter whose target softmax the student matches"),
    }
    params_type: ClassVar[type[TrainParams]] = ToyDistillParams
    params: ToyDistillParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        teacher = ModelFile.load(self.input_paths["teacher"])
        if teacher.class_names is None or len(teacher.class_names) != num_classes:
            raise ConfigError(f"inputs.teacher {self.input_paths['teacher']}: not a segmenter of {num_classes} classes")
        self.teacher_file = teacher
        self.teacher = networks.network(teacher, self.device)
        set_requires_grad([self.teacher], False)
        self._arch = {"kind": "monai_unet", "kwargs": {**self.params.network, "num_classes": num_classes}}
        self.net = networks.build(self._arch).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.params.lr)
        self.loss = DiceCE()

    def networks(self) -> Mapping[str, nn.Module]:
        return {"student": self.net}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"student": self.opt}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, float]:
        assert data.source is not None and data.target is not None
        n = self.params.batch_size
        src, src_lab = data.source.sample(n, sampler)
        tgt, tgt_lab = data.target.sample(n, sampler)  # the labelled subset
        assert src_lab is not None and tgt_lab is not None
        images = tgt if data.target_unlabelled is None else torch.cat([tgt, data.target_unlabelled.sample(n, sampler)[0]])
        images = images.to(self.device)
        with torch.no_grad():
            soft = torch.softmax(self.teacher(images).float(), dim=1)
        seg_src = self.loss(self.net(src.to(self.device)).float(), src_lab.to(self.device))
        seg_tgt = self.loss(self.net(tgt.to(self.device)).float(), tgt_lab.to(self.device))
        log_p = torch.log_softmax(self.net(images).float(), dim=1)
        distill = nn.functional.kl_div(log_p, soft, reduction="none").sum(dim=1).mean()  # per pixel
        self.backward_step(seg_src + seg_tgt + self.params.distill_weight * distill, self.opt)
        return {"seg_source": float(seg_src.detach()), "seg_target": float(seg_tgt.detach()), "distill": float(distill.detach())}

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return self.net

    def record(self) -> dict[str, Any]:
        return {"teacher_method": self.teacher_file.method, "teacher_config_hash": self.teacher_file.config_hash}
'''


def _status() -> set[str]:
    """`git status --porcelain` of the package's checkout (ignored files, e.g. __pycache__, never show)."""
    out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


@pytest.fixture(scope="module")
def toy_module():
    """The toy method as one new module of the installed `xmodseg.methods` package, removed again
    (with its bytecode) however the tests end. Yields its path and the checkout's status before."""
    folder = Path(methods_package.__file__).parent
    path = folder / f"{MODULE}.py"
    assert not path.exists(), f"{path} exists already (left over from an interrupted run?): remove it"
    before = _status()
    tmp = folder / f".{MODULE}.py.partial"  # not a module name: discovery never sees a half-written file
    try:
        tmp.write_text(TOY_SOURCE)
        os.replace(tmp, path)
        yield path, before
    finally:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        for pyc in (folder / "__pycache__").glob(f"{MODULE}.*.pyc"):
            pyc.unlink(missing_ok=True)


def write_config(repo: Path) -> None:
    toy_train = {"iterations": 3, "batch_size": 2, "checkpoint_every": 1, "log_every": 1, "network": TRAIN["network"]}
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "experiments": {
            TEACHER: {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": TRAIN},
            TOY: {
                "method": MODULE,
                "source": "mr",
                "target": "ct",
                "seeds": [0],
                "inputs": {"teacher": TEACHER},
                "labels": {"target": "subset", "fraction": 0.5, "seed": 0},
                "train": toy_train,
            },
        },
        "report": {"title": "toy"},
    }
    (repo / CONFIG).write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def project(toy_module, tmp_path_factory) -> Path:
    """A project repository (git + DVC with a local remote) after `snakemake` and `xmodseg record`."""
    base = tmp_path_factory.mktemp("toy_method")
    repo = make_tiny_project(base / "project", {}, "unused.yaml", extra=("src", ".gitignore", ".dvcignore"))
    write_config(repo)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, str(BIN / "dvc"), "init", "-q")
    run(repo, str(BIN / "dvc"), "remote", "add", "-d", "local", str(base / "dvc-remote"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "project")
    snakemake(repo)
    assert "recorded" in xmodseg(repo, "record", "--configfile", CONFIG).stdout
    return repo


def _json(repo: Path, rel: str) -> dict:
    return json.loads((repo / rel).read_text())


def test_toy_method_trains_evaluates_records_and_audits(project):
    teacher_model = L.model(TEACHER, 0)
    side = _json(project, L.sidecar(TOY, 0))
    # The declared input reached the job, was hashed into the sidecar, and the method loaded it.
    assert side["method"] == MODULE
    assert side["inputs"] == {"teacher": {"path": teacher_model, "sha256": sha256_file(project / teacher_model)}}
    assert side["method_record"] == {"teacher_method": "source_only", "teacher_config_hash": _json(project, L.sidecar(TEACHER, 0))["config_hash"]}
    # The labelled subset: drawn from the target's training cases, never a test case, round(0.5 n) of them.
    manifest = load_manifest(project / L.prepared("ct"))
    train, test = [c.case for c in manifest.cases_in("train")], [c.case for c in manifest.cases_in("test")]
    labels = side["labels"]
    k = int(0.5 * len(train) + 0.5)
    assert labels["target"] == "subset" and labels["seed"] == 0 and labels["fraction"] == 0.5
    assert set(labels["cases"]) <= set(train) and not set(labels["cases"]) & set(test)
    assert len(labels["cases"]) == labels["n_labelled"] == k >= 1 and labels["n_train"] == len(train)
    assert side["data"]["target"]["cases"] == labels["cases"]  # target labels of those cases only
    assert sorted(side["data"]["target_unlabelled"]["cases"]) == sorted(set(train) - set(labels["cases"]))
    assert side["uses_target_labels_for_training"] is True
    losses = [json.loads(line) for line in (project / L.log("train", ".jsonl", exp=TOY, seed=0)).read_text().splitlines()]
    assert [r["iteration"] for r in losses] == [1, 2, 3] and all(r["distill"] > 0 for r in losses)
    # Evaluation carries the budget into the metrics provenance; the report shows it on the toy's rows.
    metrics = _json(project, L.seed_metrics(TOY, 0))
    assert metrics["provenance"]["label_budget"] == labels
    assert metrics["provenance"]["model_sha256"] == sha256_file(project / L.model(TOY, 0))
    budget = f"target labels: subset {k}/{len(train)} (seed 0)"
    md = (project / L.path("report_md")).read_text()
    toy_rows = [line for line in md.splitlines() if line.startswith(f"| {MODULE} |")]
    teacher_rows = [line for line in md.splitlines() if line.startswith("| source_only |")]
    assert toy_rows and all(budget in line for line in toy_rows), md
    assert teacher_rows and all("target labels: none" in line for line in teacher_rows)
    csv = (project / L.path("report_csv")).read_text().splitlines()
    assert sum(line.startswith(f"{TOY},") and budget in line for line in csv) == 20  # 4 metrics x (4 classes + mean)
    # Recorded: DVC lists the teacher model as a dependency of the toy's stage.
    stage = yaml.safe_load((project / "dvc.lock").read_text())["stages"][f"experiment-{TOY}"]
    assert teacher_model in {d["path"] for d in stage["deps"]}
    # Audited: every number passes, and the inputs link names the teacher.
    out = audit(project, L.path("report_md")).stdout
    assert out.splitlines()[-1] == "40 numbers, 40 ok, 0 broken: PASS", out[-3000:]
    inputs_line = next(line for line in out.splitlines() if line.startswith(f"| {L.seed_metrics(TOY, 0)} | inputs |"))
    assert "| ok |" in inputs_line and f"teacher {teacher_model}" in inputs_line


def test_a_tampered_teacher_breaks_the_toys_inputs_link(project):
    teacher = project / L.model(TEACHER, 0)
    original = teacher.read_bytes()
    try:
        teacher.write_bytes(original + b"\0")
        out = audit(project, L.seed_metrics(TOY, 0), ok=False).stdout
        line = next(line for line in out.splitlines() if line.startswith(f"| {L.seed_metrics(TOY, 0)} | inputs |"))
        assert "| BROKEN |" in line and "input 'teacher'" in line and L.model(TEACHER, 0) in line, line
        assert out.splitlines()[-1] == "20 numbers, 0 ok, 20 broken: FAIL", out[-3000:]
    finally:
        teacher.write_bytes(original)
    audit(project, L.seed_metrics(TOY, 0))  # restored: clean again


def test_no_other_file_of_the_package_changed(project, toy_module):
    """The toy needed its module and a config entry only: the checkout's status is what it was,
    plus the new module (run while it still exists)."""
    path, before = toy_module
    rel = path.relative_to(REPO).as_posix()
    after = _status()
    assert f"?? {rel}" in after
    assert after - {f"?? {rel}"} == before - {f"?? {rel}"}

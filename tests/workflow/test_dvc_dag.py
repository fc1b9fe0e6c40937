"""dvc.yaml cannot drift from the workflow: for every shipped config, each DVC stage's deps are
exactly the files Snakemake's own DAG gives that stage's jobs as inputs (less what the stage
produces itself), at DVC's granularity (a dep folder stands for the files read inside it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_tiny_project
from tests.unit.config.test_configs import with_data_paths
from xmodseg.provenance.dvc_stages import CODE_DEPS, render_stages

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

BIN = Path(sys.executable).parent
CONFIGS = sorted(p.name for p in (REPO / "config").glob("*.yaml") if "experiments" in (yaml.safe_load(p.read_text()) or {}))
JOB = re.compile(r"^(?:local)?rule (\S+):$")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("dvcdag") / "p", {}, "unused.yaml")


def dry_run_jobs(wd: Path, configfile: str) -> list[dict]:
    """Every job of the DAG from `snakemake -n --forceall` (its printed job blocks): rule,
    wildcards, input and output files."""
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--forceall", "--configfile", configfile], cwd=wd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: list[dict] = []
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        m = JOB.match(line)
        if m:
            jobs.append({"rule": m.group(1), "input": [], "output": [], "wildcards": {}})
        elif jobs and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            if key in ("input", "output"):
                jobs[-1][key] = value.split(", ")
            elif key == "wildcards":
                jobs[-1]["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
    assert jobs and any(j["rule"] == "train" for j in jobs), proc.stdout[-3000:]
    return jobs


def stage_of(job: dict) -> str | None:
    """The DVC stage that records this job (None: the `all` target)."""
    rule, w = job["rule"], job["wildcards"]
    if rule == "all":
        return None
    if rule.startswith(("synth_", "import_")) or rule == "fetch_source":
        return "data"
    if rule == "prepare_cache":
        return f"preprocess-{w['modality']}"
    if rule in ("translate", "translation_check"):
        return f"translate-{w['tname']}"
    if rule in ("train", "evaluate", "aggregate"):
        return f"experiment-{w['exp']}"
    if rule == "report":
        return "report"
    raise AssertionError(f"rule {rule} belongs to no DVC stage: add it to dvc_stages.py and here")


def covered_by(path: str, deps: list[str]) -> str | None:
    return next((d for d in deps if path == d or path.startswith(d.rstrip("/") + "/")), None)


@pytest.mark.parametrize("name", [*CONFIGS, "mmwhs_sifa.yaml:mmwhs_sifa_release"])
def test_dvc_deps_equal_the_inputs_of_snakemakes_jobs(project, name, monkeypatch, tmp_path):
    name, _, dataset = name.partition(":")
    text = (REPO / "config" / name).read_text()
    if dataset:  # the same protocol on the SIFA release (a cache built from its download)
        text = text.replace("dataset: mmwhs ", f"dataset: {dataset} ", 1)
    configfile = with_data_paths(project, text, f"{dataset or 'x'}_{name}", tmp_path / "data").relative_to(project).as_posix()
    monkeypatch.chdir(project)  # the config names its registry relative to the project
    stages = render_stages(yaml.safe_load((project / configfile).read_text()), configfile)
    reads: dict[str, set[str]] = {s: set() for s in stages}
    made: dict[str, set[str]] = {s: set() for s in stages}
    for job in dry_run_jobs(project, configfile):
        stage = stage_of(job)
        if stage is not None:
            assert stage in stages, f"{job['rule']} {job['wildcards']}: no DVC stage {stage}"
            reads[stage] |= set(job["input"])
            made[stage] |= set(job["output"])
    for stage, spec in stages.items():
        assert spec["deps"][: len(CODE_DEPS)] == CODE_DEPS
        deps = spec["deps"][len(CODE_DEPS) :]
        needed = reads[stage] - made[stage]
        uncovered = sorted(p for p in needed if covered_by(p, deps) is None)
        assert not uncovered, f"{stage}: Snakemake's jobs read {uncovered}, not in the DVC deps {deps}"
        unused = sorted(d for d in deps if not any(covered_by(p, [d]) for p in needed))
        assert not unused, f"{stage}: DVC deps {unused} are read by none of the stage's Snakemake jobs"
        if stage.startswith(("experiment-", "translate-")):  # named artifacts: listed file by file
            assert sorted(deps) == sorted(needed), stage
        outs = spec["outs"] + [next(iter(m)) for m in spec.get("metrics", [])]
        if stage != "data":  # downloads stay outside DVC; the raw files are what is recorded
            stray = sorted(p for p in made[stage] if covered_by(p, outs) is None)
            assert not stray, f"{stage}: Snakemake writes {stray} outside the stage's DVC outs {outs}"
    if dataset:  # the release's cache reads its download marker: a dep DVC hashes
        assert "data/downloads/mmwhs_sifa_release/ct/source.json" in stages["preprocess-ct"]["deps"]

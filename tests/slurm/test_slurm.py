"""The workflow on a real single-node SLURM with two fake GPUs (tests/slurm/slurm_cluster.py): jobs go
through sbatch, GPU jobs get CUDA_VISIBLE_DEVICES from SLURM, at most two overlap, and the
results equal a local run's. Skipped, saying why, where SLURM cannot be started."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_tiny_project
from tests.workflow.gpu_workflow import BIN, GPU_CONFIG, check_distinct_devices, env, gpu_intervals, max_overlap

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm_run(slurm_controller, tmp_path_factory) -> tuple[Path, str]:
    if slurm_controller is not None:
        pytest.skip(f"SLURM unavailable: {slurm_controller}")
    wd = make_tiny_project(tmp_path_factory.mktemp("slurm") / "project", GPU_CONFIG, "gpu.yaml")
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", "config/gpu.yaml"]
    proc = subprocess.run(cmd, cwd=wd, env=env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return wd, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def slurm_quota_run(slurm_controller, tmp_path_factory) -> Path:
    """The docs' recipe for a GPU quota: `--resources gpu=1` caps GPU jobs across the cluster."""
    if slurm_controller is not None:
        pytest.skip(f"SLURM unavailable: {slurm_controller}")
    wd = make_tiny_project(tmp_path_factory.mktemp("slurm_quota") / "project", GPU_CONFIG, "gpu.yaml")
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--resources", "gpu=1", "--configfile", "config/gpu.yaml"]
    proc = subprocess.run(cmd, cwd=wd, env=env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return wd


def test_a_gpu_quota_caps_the_gpu_jobs_running_at_once(slurm_quota_run):
    iv = gpu_intervals(slurm_quota_run)
    assert len(iv) == 4 and all(how == "scheduler" for *_, how in iv.values()), iv
    assert max_overlap(iv.values()) == 1  # the node has two GPUs; the quota allows one


def test_training_knows_its_slurm_time_limit(slurm_run):
    """The profile's runtime (240 min for train, sbatch -t) is what the job finds left: it would stop
    with a checkpoint 5 % before it."""
    wd, _ = slurm_run
    logs = sorted((wd / "logs" / "train").rglob("*.log"))
    found = [re.search(r"SLURM: ([\d.]+) min left in this job: training stops with a checkpoint after ([\d.]+) min", p.read_text()) for p in logs]
    assert logs and all(found), [p.name for p, m in zip(logs, found, strict=True) if not m]
    assert all(230 < float(m.group(1)) <= 240 and abs(float(m.group(2)) - 0.95 * float(m.group(1))) < 0.1 for m in found if m)


def test_jobs_ran_as_slurm_jobs(slurm_run):
    wd, output = slurm_run
    logs = sorted((wd / ".snakemake" / "slurm_logs").rglob("*.log"))
    by_rule: dict[str, list[int]] = {}
    for log in logs:
        rule = log.relative_to(wd / ".snakemake" / "slurm_logs").parts[0]
        assert re.fullmatch(r"\d+\.log", log.name), log
        by_rule.setdefault(rule, []).append(int(log.stem))
    assert len(by_rule.get("rule_train", [])) == 4 and len(by_rule.get("rule_evaluate", [])) == 4, by_rule
    assert len(by_rule.get("rule_prepare_cache", [])) == 2
    ids = [i for v in by_rule.values() for i in v]
    assert len(ids) == len(set(ids))  # one SLURM job id per job
    assert re.search(r"submitted with SLURM jobid \d+", output)


def test_gpu_jobs_got_devices_from_slurm_and_at_most_two_overlapped(slurm_run):
    wd, _ = slurm_run
    iv = gpu_intervals(wd)
    assert len(iv) == 4 and all(how == "scheduler" for *_, how in iv.values()), iv
    assert {cvd for _, _, cvd, _ in iv.values()} <= {"0", "1"}
    assert max_overlap(iv.values()) == 2  # two fake GPUs: never three, and SLURM did run two at once
    assert check_distinct_devices(iv) >= 1


def test_results_equal_a_local_run(slurm_run, gpu_local_run):
    wd, _ = slurm_run
    for exp in GPU_CONFIG["experiments"]:
        rel = f"results/evaluation/tiny_synth/{exp}/seed0/metrics.json"
        slurm = json.loads((wd / rel).read_text())
        local = json.loads((gpu_local_run / rel).read_text())
        assert slurm["cases"][0]["dice"] == local["cases"][0]["dice"], exp
        assert slurm["summary"] == local["summary"], exp
        assert slurm["provenance"]["model_sha256"] != "" and slurm["provenance"]["environment"]["slurm_job_id"]

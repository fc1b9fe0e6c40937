"""GPU scheduling on one machine for real: `--resources gpu=2` with four GPU jobs, device leases,
CPU fallback, and a training job killed with SIGKILL that resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_tiny_project
from tests.workflow.gpu_workflow import BIN, GPU_CONFIG, TRAIN, check_distinct_devices, env, gpu_intervals, max_overlap
from xmodseg import gpu_lease

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py



@pytest.fixture(scope="module")
def local_run(gpu_local_run) -> Path:
    return gpu_local_run


def test_two_gpus_four_jobs_at_most_two_at_once_on_distinct_devices(local_run):
    iv = gpu_intervals(local_run)
    assert len(iv) == 4 and all(how == "lease" for *_, how in iv.values())
    assert max_overlap(iv.values()) == 2  # gated by --resources gpu=2 (and the jobs did run in parallel)
    assert check_distinct_devices(iv) >= 1
    assert {cvd for _, _, cvd, _ in iv.values()} == {"0", "1"}
    # no GPU visible here: training fell back to the CPU
    side = json.loads((local_run / "results/models/tiny_synth/oracle_mr2ct/seed0/model.json").read_text())
    assert "cpu" in json.dumps(side["device"]).lower()


def test_lease_is_exclusive_released_on_death_and_skipped_under_a_scheduler(tmp_path):
    code = "from xmodseg import gpu_lease; import os,sys,time; gpu_lease.acquire(2); print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(60)"
    e = env(XMODSEG_GPU_LOCK_DIR=str(tmp_path))
    holders = [subprocess.Popen([sys.executable, "-c", code], env=e, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        got = [p.stdout.readline().strip() for p in holders]
        assert sorted(got) == ["0", "1"]
        third = subprocess.run([sys.executable, "-c", "from xmodseg import gpu_lease; gpu_lease.acquire(2, timeout=1)"], env=e, capture_output=True, text=True)
        assert third.returncode != 0 and "no free GPU slot among 2" in third.stderr
        holders[0].send_signal(signal.SIGKILL)  # the kernel drops a dead job's lock
        holders[0].wait()
        again = subprocess.run([sys.executable, "-c", code.replace("time.sleep(60)", "")], env=e, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and again.stdout.strip() == got[0]  # the dead job's slot
    finally:
        for p in holders:
            p.kill()
            p.wait()
    sched = subprocess.run([sys.executable, "-c", code.replace("time.sleep(60)", "")], env={**e, "CUDA_VISIBLE_DEVICES": "3"}, capture_output=True, text=True)
    assert sched.stdout.strip() == "3"  # SLURM's choice is kept, no lock taken
    assert not (tmp_path / "gpu3.lock").exists()


def test_no_slots_means_no_lease(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(gpu_lease.SLOTS_ENV, raising=False)
    monkeypatch.setattr(gpu_lease, "_current", None)
    lease = gpu_lease.acquire()
    assert lease.source == "none" and "CUDA_VISIBLE_DEVICES" not in os.environ
    gpu_lease.release()


def _train_pids(workdir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"xmodseg" in c for c in cmd[:2]) and b"train" in cmd and any(str(workdir).encode() in c or b"results/checkpoints" in c for c in cmd):
            cwd = os.readlink(proc / "cwd") if (proc / "cwd").exists() else ""
            if cwd == str(workdir):
                pids.append(int(proc.name))
    return pids


def test_sigkilled_training_job_resumes_from_its_checkpoint(tmp_path):
    cfg = {**GPU_CONFIG, "experiments": {"oracle_mr2ct": {**GPU_CONFIG["experiments"]["oracle_mr2ct"], "train": {**TRAIN, "iterations": 400, "checkpoint_every": 20}}}}
    wd = make_tiny_project(tmp_path / "kill", cfg, "kill.yaml")
    ckpt = wd / "results/checkpoints/tiny_synth/oracle_mr2ct/seed0/last.pt"
    cmd = [str(BIN / "snakemake"), "--cores", "2", "--configfile", "config/kill.yaml", "--retries", "1"]
    proc = subprocess.Popen(cmd, cwd=wd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not ckpt.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
            time.sleep(0.2)
        pids = _train_pids(wd)
        assert pids, "training process not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert "Trying to restart job" in out or "retry" in out.lower()
    side = json.loads((wd / "results/models/tiny_synth/oracle_mr2ct/seed0/model.json").read_text())
    assert side["loop"]["resumed_from"] >= 20 and side["loop"]["iterations_done"] == 400
    events = [json.loads(line) for line in (wd / "logs/train/tiny_synth/oracle_mr2ct/seed0.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "iteration": side["loop"]["resumed_from"]} in events

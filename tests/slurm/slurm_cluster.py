"""A single-node SLURM with two fake GPUs for the SLURM tests (facts in shared docs infra.md 1b).

Needs root and the Debian packages (`.ci/install-slurm.sh`). Daemons are started by hand (no
systemd) and stopped by the PIDs in their pid files, never by name. While SLURM client tools are
installed, the Snakemake SLURM plugin asks the controller for its config at import (a ~10 s stall
when none answers), so the test session keeps the controller up while it runs (conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# Kept as first written (before the tests moved to tests/slurm/): it marks files these tests own.
MARKER = "# written by xmodseg tests/slurm_cluster.py"
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
PIDS = {"slurmd": Path("/run/slurmd.pid"), "slurmctld": Path("/run/slurmctld.pid"), "munged": Path("/run/munge/munged.pid")}
GPUS = 2
CPUS = 8  # more than the VM has (config_overrides), so GPUs, not CPUs, bound concurrency


def unavailable_reason() -> str | None:
    """Why the SLURM tests cannot run here (None: they can)."""
    if os.environ.get("XMODSEG_SKIP_SLURM"):
        return "XMODSEG_SKIP_SLURM is set"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sinfo", "sbatch") if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing); run .ci/install-slurm.sh as root on Debian"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if CONF.exists() and MARKER not in CONF.read_text():
        return f"{CONF} exists and was not written by these tests; not overwriting a real SLURM configuration"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "the Snakemake SLURM executor plugin is not installed (pip install '.[slurm]')"
    return None


def _slurm_conf(host: str) -> str:
    return f"""{MARKER}
ClusterName=xmodseg-ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile={PIDS['slurmctld']}
SlurmdPidFile={PIDS['slurmd']}
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
MpiDefault=none
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={host} CPUs={CPUS} RealMemory=16000 Gres=gpu:fake:{GPUS} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def stop() -> None:
    """Stop the daemons by their pid files (TERM, then KILL)."""
    for name in ("slurmd", "slurmctld", "munged"):
        pid = _alive(PIDS[name])
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _alive(PIDS[name]) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


def running() -> bool:
    """Our daemons are up and the node is idle (e.g. started by another test session)."""
    if not all(_alive(PIDS[n]) for n in PIDS) or not CONF.exists() or MARKER not in CONF.read_text():
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    return out.stdout.strip() in ("idle", "mixed", "allocated")


def start(timeout: float = 60) -> bool:
    """Start the daemons; False if ours were already running (then leave them to their owner)."""
    if running():
        return False
    host = socket.gethostname().split(".")[0]
    stop()  # leftovers of an interrupted session
    for d in ("/var/lib/slurm/slurmctld", "/var/lib/slurm/slurmd", "/var/log/slurm", "/run/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    for i in range(GPUS):
        dev = Path(f"/dev/fakegpu{i}")
        if not dev.exists():
            subprocess.run(["mknod", "-m", "666", str(dev), "c", "1", "3"], check=True)  # like /dev/null
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_slurm_conf(host))
    GRES.write_text(f"{MARKER}\nAutoDetect=off\nNodeName={host} Name=gpu Type=fake File=/dev/fakegpu[0-{GPUS - 1}]\n")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    subprocess.run(["/usr/sbin/slurmctld"], check=True)
    subprocess.run(["/usr/sbin/slurmd"], check=True)
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
        state = out.stdout.strip()
        if state == "idle":
            return True
        if state in ("down", "drained", "inval"):
            subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], check=False)
        time.sleep(0.5)
    stop()
    raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s (state {state!r}); see /var/log/slurm/")

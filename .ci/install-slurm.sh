#!/usr/bin/env bash
# Install single-node SLURM (Debian packages) so the SLURM tests run for real (tests/test_slurm.py
# starts and stops the daemons itself). Without root or apt the tests skip and say why.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    echo "SLURM already installed"; exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "not root or no apt-get: SLURM not installed; tests/test_slurm.py will be skipped" >&2; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
echo "SLURM installed: $(slurmctld -V)"

"""The download/import stage inside the real workflow: one modality downloaded from a local HTTP
server as a tar archive (verified, extracted safely), the other imported from a user's folder;
both preprocess. A missing registration-gated folder stops with instructions."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import blob_case, make_tiny_project, write_volume

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py
BIN = Path(sys.executable).parent
CASES = ["1", "2", "3"]


def _serve(folder: Path):
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[assignment]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("fetch")
    rng = np.random.default_rng(0)
    # CT: an MSD-like task archive on a web server
    task = base / "build" / "Task99_Blobs"
    for c in CASES:
        img, lab = blob_case(rng, kind="ct")
        write_volume(task / "imagesTr" / f"blob_{c}.nii.gz", img, (1.0, 1.0, 1.5))
        write_volume(task / "labelsTr" / f"blob_{c}.nii.gz", lab, (1.0, 1.0, 1.5))
    (base / "www").mkdir()
    archive = base / "www" / "Task99_Blobs.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(task, arcname="Task99_Blobs")
    # MR: a user's folder (registration-gated style import)
    own = base / "my scans"
    for c in CASES:
        img, lab = blob_case(rng, kind="mr", scale=300.0)
        write_volume(own / "images" / f"case{c}.nii.gz", img, (1.2, 1.2, 2.0))
        write_volume(own / "labels" / f"case{c}_seg.nii.gz", lab, (1.2, 1.2, 2.0))
    httpd = _serve(base / "www")
    url = f"http://127.0.0.1:{httpd.server_address[1]}/Task99_Blobs.tar.gz"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    wd = make_tiny_project(base / "project", {}, "unused.yaml")
    registry = {
        "datasets": {
            "ext": {
                "root": "data/raw/ext",
                "source": {"kind": "import"},
                "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {0: 0, 205: 1, 420: 2, 500: 3, 820: 4}},
                "modalities": {
                    "ct": {
                        "kind": "ct", "image": "ct/{case}_image.nii.gz", "label": "ct/{case}_label.nii.gz", "cases": CASES, "test": ["3"],
                        "source": {"kind": "download", "files": [{"url": url, "sha256": sha, "name": "Task99_Blobs.tar.gz", "insecure": True}], "importer": "folder",
                                   "subdir": "Task99_Blobs/Task99_Blobs", "layout": {"image": "imagesTr/blob_{case}.nii.gz", "label": "labelsTr/blob_{case}.nii.gz"}},
                    },
                    "mr": {
                        "kind": "mr", "image": "mr/{case}_image.nii.gz", "label": "mr/{case}_label.nii.gz", "cases": CASES, "test": ["3"],
                        "source": {"kind": "import", "request": "https://example.org/register", "importer": "folder",
                                   "layout": {"image": "images/case{case}.nii.gz", "label": "labels/case{case}_seg.nii.gz"}},
                    },
                },
            }
        }
    }
    (wd / "config" / "ext_datasets.yaml").write_text(yaml.safe_dump(registry))
    yield wd, own, url
    httpd.shutdown()


def write_config(wd: Path, data_path: dict) -> None:
    cfg = {
        "registry": "config/ext_datasets.yaml",
        "dataset": "ext",
        "data_path": data_path,
        "preprocess": {"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]},
        "experiments": {"oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0], "train": {"iterations": 2, "batch_size": 2}}},
    }
    (wd / "config" / "ext.yaml").write_text(yaml.safe_dump(cfg))


def snakemake(wd: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "snakemake"), *targets, "--cores", "2", "--configfile", "config/ext.yaml"], cwd=wd, env=env, capture_output=True, text=True, timeout=600)


def test_gated_data_without_a_path_stops_with_instructions(project):
    """Said while planning (no job starts), with the block to write and where to request the data;
    a path given on the command line of the fetch step alone still gets the job's own message."""
    wd, _, _ = project
    write_config(wd, {})
    proc = snakemake(wd, "data/downloads/ext/mr/source.json")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "data_path.mr is missing: data set 'ext' imports 'mr' from your files; set `data_path: {mr: /path/to/your/mr/folder-or-archive}` in config/ext.yaml" in out
    assert "(get the data: https://example.org/register)" in out and not (wd / "logs/fetch/ext_mr_source.log").exists()
    marker = wd / "m.json"
    rc = subprocess.run([str(BIN / "xmodseg"), "fetch-source", "--registry", "config/ext_datasets.yaml", "--dataset", "ext", "--modality", "mr",
                         "--downloads", str(wd / "dl"), "--marker", str(marker)], cwd=wd, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 2 and "needs registration: request it at https://example.org/register" in rc.stderr and "data_path" in rc.stderr


def test_download_and_import_then_preprocess(project):
    wd, own, url = project
    write_config(wd, {"mr": str(own)})
    proc = snakemake(wd, "data/prepared/ext/ct", "data/prepared/ext/mr")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (wd / "data/downloads/ext/ct/Task99_Blobs.tar.gz").is_file()
    for mod in ("ct", "mr"):
        manifest = yaml.safe_load((wd / f"data/prepared/ext/{mod}/manifest.json").read_text())
        assert [c["case"] for c in manifest["cases"]] == CASES and [c["split"] for c in manifest["cases"]] == ["train", "train", "test"]
    imported = yaml.safe_load((wd / "data/raw/ext/mr/import_manifest.json").read_text())
    assert imported["source"] == str(own) and imported["cases"][0]["image_source"].endswith("images/case1.nii.gz")
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(wd, "data/prepared/ext/ct", "data/prepared/ext/mr", "-n"))

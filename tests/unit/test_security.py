"""Nobody runs code through our files or config: names cannot carry shell syntax and every value is
quoted in job commands, `audit --reinfer` never loads a model whose hash link is broken, the GPU
lock folder is private and its files are never followed or truncated, downloads need https and a
checksum unless the registry opts out by name."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import logging
import os
import shlex
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_tiny_project
from tests.unit.datasets.test_download import PAYLOAD, SHA, Server
from xmodseg import gpu_lease
from xmodseg.datasets.download import DownloadError, download
from xmodseg.errors import ConfigError
from xmodseg.registry import dataset_from_config, load_dataset, load_registry

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

BIN = Path(sys.executable).parent
HOSTILE = ["x`touch PWNED`", "y$(id>PWNED)", "a b", "../up", "-rf", "z;id"]
LABELS = {"classes": ["background", "x"], "mapping": {0: 0, 1: 1}}


def _entry(modality: str = "ct", cases: list = ["a", "b"]) -> dict:  # noqa: B006 - read only
    return {"labels": LABELS, "modalities": {modality: {"kind": "ct", "image": "{case}.nii.gz", "label": "{case}_l.nii.gz", "cases": cases, "test": [cases[-1]]}}}


# ---- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_registry_names_are_refused_naming_the_key(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    reg = tmp_path / "datasets.yaml"
    reg.write_text(yaml.safe_dump({"datasets": {"fine": _entry(), name: _entry()}}))
    with pytest.raises(ConfigError, match="data-set name") as exc:
        load_registry(reg)
    assert repr(name) in str(exc.value) and str(reg) in str(exc.value) and "letters, digits" in str(exc.value)
    with pytest.raises(ConfigError, match=r"datasets\.d\.modalities: modality name"):
        dataset_from_config("d", _entry(modality=name))
    with pytest.raises(ConfigError, match=r"datasets\.d\.modalities\.ct\.cases: case id"):
        dataset_from_config("d", _entry(cases=["ok1", name]))
    assert not (tmp_path / "PWNED").exists()


def test_config_schema_refuses_hostile_names():
    import jsonschema

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    train = {"iterations": 1}
    good = {"registry": "config/my registry.yaml", "dataset": "synthetic_v1", "preprocess": {"spacing": [1, 1, 1], "slice_axis": "axial", "crop_size": [8, 8]},
            "experiments": {"e.1": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0], "train": train}}}
    jsonschema.validate(good, schema)  # a path may hold spaces: it is quoted, not restricted
    for bad in ({"dataset": "y$(id>PWNED)"}, {"data_path": {"m`id`": "/x"}},
                {"experiments": {"e": {**good["experiments"]["e.1"], "source": "mr;id"}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, **bad}, schema)


def test_every_shipped_name_matches_the_pattern(monkeypatch):
    monkeypatch.chdir(REPO)
    for name in load_registry("config/datasets.yaml"):
        load_dataset("config/datasets.yaml", name)  # data-set, modality and case names checked
    for cfg in sorted((REPO / "config").glob("*.yaml")):
        doc = yaml.safe_load(cfg.read_text())
        if "dataset" in doc:
            load_dataset(doc["registry"], doc["dataset"])


def _tiny(dest: Path) -> Path:
    cfg = {"preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
           "experiments": {"oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0], "train": {"iterations": 2}}}}
    return make_tiny_project(dest, cfg)


def _snakemake(wd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", "config/tiny.yaml"],
                          cwd=wd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_workflow_refuses_a_dataset_name_that_would_run_a_command(tmp_path):
    wd = _tiny(tmp_path / "project")
    evil = "y$(id>PWNED)"
    reg = yaml.safe_load((wd / "config/tiny_datasets.yaml").read_text())
    (wd / "config/tiny_datasets.yaml").write_text(yaml.safe_dump({"datasets": {evil: reg["datasets"]["tiny_synth"]}}))
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    (wd / "config/tiny.yaml").write_text(yaml.safe_dump({**cfg, "dataset": evil}))
    proc = _snakemake(wd, "data/raw/tiny_synth/mr_train/mr_train_1001_image.nii.gz")
    assert not (wd / "PWNED").exists(), "the data-set name ran a command"
    assert proc.returncode != 0 and "does not match" in proc.stderr + proc.stdout  # the schema's pattern, naming the value


@pytest.mark.slow
def test_workflow_with_spaces_in_the_registry_path_and_data_root(tmp_path):
    """A real synth job, then the command of every other job: each path is one shell word."""
    wd = _tiny(tmp_path / "my project")
    reg = yaml.safe_load((wd / "config/tiny_datasets.yaml").read_text())
    reg["datasets"]["tiny_synth"]["root"] = "data/raw/tiny synth"
    (wd / "config/my registry.yaml").write_text(yaml.safe_dump(reg))
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    (wd / "config/tiny.yaml").write_text(yaml.safe_dump({**cfg, "registry": "config/my registry.yaml"}))
    proc = _snakemake(wd, "data/raw/tiny synth/mr_train/mr_train_1003_label.nii.gz")
    assert proc.returncode == 0, (proc.stderr[-3000:], (wd / "logs/synth/tiny_synth_mr.log").read_text()[-2000:] if (wd / "logs/synth").exists() else "")
    assert len(list((wd / "data/raw/tiny synth/mr_train").glob("*.nii.gz"))) == 6
    out = _snakemake(wd, "-n", "--printshellcmds").stdout
    commands = [line.split("Shell command: ", 1)[1] for line in out.splitlines() if line.startswith("Shell command: ") and "xmodseg" in line]
    rules = {(w := shlex.split(c))[w.index("xmodseg") + 1] for c in commands}  # after any VAR=value prefixes
    assert {"synth", "prepare-cache", "train", "evaluate", "aggregate", "report"} <= rules, rules
    for c in commands:
        words = shlex.split(c)
        for i, w in enumerate(words[:-1]):
            if w == "--registry":
                assert words[i + 1] == "config/my registry.yaml", c
        assert "registry.yaml" not in words, c


# ---- audit --reinfer -----------------------------------------------------------------------------


class Loaded(Exception):
    pass


def _audit_fixture(repo: Path, model_bytes: bytes, recorded: bytes) -> str:
    model = "results/models/d/e/seed0/model.pt"
    (repo / model).parent.mkdir(parents=True)
    (repo / model).write_bytes(model_bytes)
    sha = hashlib.sha256(recorded).hexdigest()
    (repo / model).with_suffix(".json").write_text(json.dumps({"model_sha256": sha}))
    metrics = "results/evaluation/d/e/seed0/metrics.json"
    (repo / metrics).parent.mkdir(parents=True)
    prov = {"model": model, "model_sha256": sha, "data_manifest": "data/prepared/d/ct/manifest.json", "labels": {"classes": ["bg", "x"], "mapping": {0: 0, 1: 1}, "ignore": []}}
    (repo / metrics).write_text(json.dumps({"experiment": {"name": "e"}, "provenance": prov, "cases": [], "class_names": ["x"]}))
    return metrics


@pytest.mark.parametrize("tampered", [True, False])
def test_reinfer_never_loads_a_model_whose_hash_link_is_broken(tmp_path, monkeypatch, tampered):
    from xmodseg.nn import networks
    from xmodseg.provenance import audit as audit_mod

    calls = []

    def spy(path, device):
        calls.append(path)
        raise Loaded(path)

    monkeypatch.setattr(networks, "load_model", spy)
    monkeypatch.setattr(audit_mod, "_recomputed_doc", lambda metrics, path, repo: (None, []))  # values: tested elsewhere
    good = b"the recorded model"
    metrics = _audit_fixture(tmp_path, b"a swapped payload" if tampered else good, good)
    if not tampered:  # control: an intact model is re-inferred
        with pytest.raises(Loaded):
            audit_mod.audit(metrics, repo=tmp_path, reinfer=True)
        return
    result = audit_mod.audit(metrics, repo=tmp_path, reinfer=True)
    assert calls == []
    links = {lk.name: lk for lk in result.links[metrics]}
    assert not links["model"].ok and "model.pt: sha256" in links["model"].detail  # still reported
    assert not links["reinfer"].ok and "not re-inferred" in links["reinfer"].detail and "model link is broken" in links["reinfer"].detail
    assert not result.ok


# ---- GPU lease folder ----------------------------------------------------------------------------


@pytest.fixture
def fresh_lease(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(gpu_lease.LOCK_DIR_ENV, raising=False)
    monkeypatch.setattr(gpu_lease, "_current", None)
    yield
    gpu_lease.release()


def test_symlinked_lock_folder_is_refused(tmp_path, fresh_lease):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="is a symbolic link") as exc:
        gpu_lease.acquire(1, lock_dir=tmp_path / "link", timeout=0)
    assert str(tmp_path / "link") in str(exc.value) and gpu_lease.LOCK_DIR_ENV in str(exc.value)
    assert list(real.iterdir()) == []
    (tmp_path / "dangling").symlink_to(tmp_path / "target")  # not created through the link
    with pytest.raises(ConfigError, match="is a symbolic link"):
        gpu_lease.acquire(1, lock_dir=tmp_path / "dangling", timeout=0)
    assert not (tmp_path / "target").exists()


def test_lock_folder_writable_by_others_is_refused(tmp_path, fresh_lease):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by group or others") as exc:
        gpu_lease.acquire(1, lock_dir=shared, timeout=0)
    assert str(shared) in str(exc.value)
    assert list(shared.iterdir()) == []


def test_symlinked_lock_file_is_not_followed_and_its_target_not_truncated(tmp_path, fresh_lease):
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    victim = tmp_path / "thesis.tex"
    victim.write_text("years of work\n")
    (locks / "gpu0.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="gpu0.lock is a symbolic link"):
        gpu_lease.acquire(1, lock_dir=locks, timeout=0)
    assert victim.read_text() == "years of work\n"


def test_lock_files_are_reused_without_truncation(tmp_path, fresh_lease, monkeypatch):
    locks = tmp_path / "locks"
    lease = gpu_lease.acquire(1, lock_dir=locks, timeout=0)
    assert lease.visible_devices == "0" and (locks.stat().st_mode & 0o777) == 0o700  # created private
    first = (locks / "gpu0.lock").read_text()
    assert first.startswith(f"pid {os.getpid()}")
    gpu_lease.release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # set by the lease; a new lease would otherwise keep it
    (locks / "gpu0.lock").write_text("pid 1" + " " * 40 + "\nkept\n")
    gpu_lease.acquire(1, lock_dir=locks, timeout=0)
    text = (locks / "gpu0.lock").read_text()
    assert text.startswith(f"pid {os.getpid()}") and text.endswith("\nkept\n")  # overwritten in place, never cut


def test_default_lock_folder_prefers_a_private_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(gpu_lease.LOCK_DIR_ENV, raising=False)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert gpu_lease.default_lock_dir() == runtime / "xmodseg-gpu-locks"
    runtime.chmod(0o755)  # not what the XDG spec promises: fall back to the temporary directory
    assert gpu_lease.default_lock_dir().name == f"xmodseg-gpu-locks-{os.getuid()}"
    monkeypatch.setenv(gpu_lease.LOCK_DIR_ENV, str(tmp_path / "mine"))
    assert gpu_lease.default_lock_dir() == tmp_path / "mine"


# ---- downloads -----------------------------------------------------------------------------------


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_http_file_and_unknown_schemes_are_refused_without_insecure(server, tmp_path):
    with pytest.raises(DownloadError, match="insecure: true") as exc:
        download(server.url, tmp_path / "f.bin", SHA, progress=False)
    assert server.url in str(exc.value) and server.requests == []  # refused before connecting
    local = tmp_path / "local.bin"
    local.write_bytes(PAYLOAD)
    with pytest.raises(DownloadError, match="file://"):
        download(local.as_uri(), tmp_path / "f.bin", SHA, progress=False)
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        download("ftp://127.0.0.1/x", tmp_path / "f.bin", SHA, progress=False, insecure=True)
    assert not (tmp_path / "f.bin").exists()
    assert download(local.as_uri(), tmp_path / "f.bin", SHA, progress=False, insecure=True).read_bytes() == PAYLOAD


def test_unpinned_file_needs_allow_unpinned(server, tmp_path, caplog):
    with pytest.raises(DownloadError, match="allow_unpinned: true") as exc:
        download(server.url, tmp_path / "f.bin", None, progress=False, insecure=True)
    assert server.url in str(exc.value) and server.requests == []
    with caplog.at_level(logging.WARNING, logger="xmodseg.datasets.download"):
        dest = download(server.url, tmp_path / "f.bin", None, progress=False, insecure=True, allow_unpinned=True)
    assert dest.read_bytes() == PAYLOAD and SHA in caplog.text


def _self_signed(folder: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_https_works_and_a_redirect_to_http_is_refused(server, tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted by the default context for this test only

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/down":  # a downgrade to the plain-http server
                self.send_response(302)
                self.send_header("Location", server.url)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert download(f"{base}/file", tmp_path / "a.bin", SHA, progress=False).read_bytes() == PAYLOAD
        with pytest.raises(DownloadError, match="redirects to http://") as exc:
            download(f"{base}/down", tmp_path / "b.bin", SHA, progress=False)
        assert "insecure: true" in str(exc.value) and server.requests == [] and not (tmp_path / "b.bin").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_registry_download_entries_are_pinned_https_or_say_so(monkeypatch, tmp_path, server):
    from xmodseg.datasets.fetch import check_file_entry, prepare_source

    monkeypatch.chdir(REPO)
    chaos = load_dataset("config/datasets.yaml", "abdomen").source_of("mr")["files"][0]
    assert chaos.get("allow_unpinned") is True and "sha256" not in chaos
    for name in load_registry("config/datasets.yaml"):
        spec = load_dataset("config/datasets.yaml", name)
        for mod in spec.modalities:
            for i, f in enumerate(spec.source_of(mod).get("files") or []):
                f = check_file_entry(f, f"{name}.{mod}[{i}]")
                assert f["url"].startswith("https://") and not f.get("insecure"), (name, f)
                assert f.get("sha256") or f.get("md5") or f.get("allow_unpinned") is True, (name, f)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['alow_unpinned'\]"):
        check_file_entry({"url": "https://x/y", "name": "y", "alow_unpinned": True}, "k")
    with pytest.raises(ConfigError, match="k.insecure: expected true or false"):
        check_file_entry({"url": "https://x/y", "name": "y", "insecure": "yes"}, "k")
    with pytest.raises(ConfigError, match="k.name: file name"):
        check_file_entry({"url": "https://x/y", "name": "../../y"}, "k")
    # the stage itself: a registry file entry on plain http without `insecure: true` is refused
    spec = dataset_from_config("own", {**_entry(), "source": {"kind": "download", "files": [{"url": server.url, "sha256": SHA, "name": "f.bin"}]}})
    with pytest.raises(DownloadError, match="insecure: true"):
        prepare_source(spec, "ct", tmp_path / "dl", tmp_path / "dl" / "source.json")
    assert server.requests == []

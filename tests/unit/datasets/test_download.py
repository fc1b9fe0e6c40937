"""Downloads against a local HTTP server (127.0.0.1; plain http, hence `insecure=True`) and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from xmodseg.datasets.archive import UnsafeArchive, check_members, extract
from xmodseg.datasets.download import ChecksumMismatch, DownloadError, download, partial_path
from xmodseg.errors import InputDataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """Serves PAYLOAD at /file with Range support; can cut the first transfer after N bytes."""

    def __init__(self) -> None:
        self.cut_after: int | None = None
        self.honour_range = True
        self.requests: list[str | None] = []
        self.status_once: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                if server.status_once:
                    code, server.status_once = server.status_once, None
                    self.send_error(code)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(PAYLOAD):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    n, server.cut_after = server.cut_after, None
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the transfer dies mid-way
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_verified_and_skipped_when_present(server, tmp_path):
    dest = download(server.url, tmp_path / "f.bin", SHA, progress=False, insecure=True)
    assert dest.read_bytes() == PAYLOAD and not partial_path(dest).exists()
    download(server.url, dest, SHA, progress=False, insecure=True)
    assert len(server.requests) == 1  # the second call found the verified file


def test_cut_transfer_resumes_with_a_range_request(server, tmp_path):
    server.cut_after = 300_000
    dest = download(server.url, tmp_path / "f.bin", SHA, progress=False, insecure=True, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0] is None and server.requests[1] == "bytes=300000-"


def test_partial_file_from_an_earlier_run_is_continued(server, tmp_path):
    dest = tmp_path / "f.bin"
    partial_path(dest).write_bytes(PAYLOAD[:123_456])
    download(server.url, dest, SHA, progress=False, insecure=True)
    assert dest.read_bytes() == PAYLOAD and server.requests == ["bytes=123456-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "f.bin"
    partial_path(dest).write_bytes(PAYLOAD[:1000])
    download(server.url, dest, SHA, progress=False, insecure=True)
    assert dest.read_bytes() == PAYLOAD


def test_transient_http_error_is_retried(server, tmp_path):
    server.status_once = 503
    download(server.url, tmp_path / "f.bin", SHA, progress=False, insecure=True, backoff=0.01)
    assert len(server.requests) == 2


def test_checksum_mismatch_keeps_nothing_under_the_final_name(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumMismatch, match="does not match the registry") as exc:
        download(server.url, dest, "0" * 64, progress=False, insecure=True)
    assert server.url in str(exc.value)
    assert not dest.exists() and not partial_path(dest).exists()


def test_permanent_http_error_names_the_url(server, tmp_path):
    server.status_once = 404
    with pytest.raises(DownloadError, match="404") as exc:
        download(server.url, tmp_path / "f.bin", SHA, progress=False, insecure=True)
    assert server.url in str(exc.value) and len(server.requests) == 1  # not retried


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_archives_extract_atomically(tmp_path):
    tar = _tar(tmp_path / "ok.tar.gz", [_file("a/b.txt", b"hello"), _file("c.txt", b"world")])
    out = extract(tar, tmp_path / "out")
    assert (out / "a/b.txt").read_bytes() == b"hello" and (out / "c.txt").read_bytes() == b"world"
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("d/e.txt", "zip")
    assert (extract(zpath, tmp_path / "zout") / "d/e.txt").read_text() == "zip"


@pytest.mark.parametrize(
    "member",
    [
        _file("../escape.txt"),
        _file("/abs.txt"),
        _file("a/../../escape.txt"),
    ],
)
def test_path_traversal_is_rejected_and_nothing_is_written(tmp_path, member):
    tar = _tar(tmp_path / "bad.tar.gz", [_file("fine.txt"), member])
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchive, match="refusing to extract"):
        extract(tar, target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.tar.gz"]  # nothing beside or above


def test_links_and_devices_are_rejected(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    for info, name in ((link, "link"), (dev, "device")):
        tar = _tar(tmp_path / f"{name}.tar", [(info, None)])
        with pytest.raises(UnsafeArchive, match=name):
            check_members(tar)
    zpath = tmp_path / "zip-traversal.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../x.txt", "x")
    with pytest.raises(UnsafeArchive, match=r"\.\."):
        extract(zpath, tmp_path / "zout")
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "zout").exists()


def test_free_disk_is_checked_before_writing(server, tmp_path, monkeypatch):
    import shutil as _shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DownloadError, match="GB needed"):
        download(server.url, tmp_path / "f.bin", SHA, progress=False, insecure=True)
    assert not (tmp_path / "f.bin").exists()


def test_import_source_from_a_user_archive(tmp_path):
    from xmodseg.datasets.fetch import DataNotProvided, prepare_source
    from xmodseg.registry import dataset_from_config

    zpath = tmp_path / "mine.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("data/images/a.nii.gz", "not really")
    sha = hashlib.sha256(zpath.read_bytes()).hexdigest()

    def spec(source):
        return dataset_from_config("own", {
            "root": str(tmp_path / "raw"), "source": source,
            "labels": {"classes": ["background", "x"], "mapping": {0: 0, 1: 1}},
            "modalities": {"ct": {"kind": "ct", "image": "{case}.nii.gz", "label": "{case}_l.nii.gz", "cases": ["a", "b"], "test": ["b"]}},
        })

    rec = prepare_source(spec({"kind": "import", "sha256": sha}), "ct", tmp_path / "dl", tmp_path / "dl" / "source.json", str(zpath))
    assert (Path(rec["folder"]) / "data/images/a.nii.gz").read_text() == "not really"
    with pytest.raises(InputDataError, match="is not the registry's"):
        prepare_source(spec({"kind": "import", "sha256": "0" * 64}), "ct", tmp_path / "dl2", tmp_path / "dl2" / "s.json", str(zpath))
    with pytest.raises(DataNotProvided, match="request it at https://example.org"):
        prepare_source(spec({"kind": "import", "request": "https://example.org"}), "ct", tmp_path / "dl3", tmp_path / "dl3" / "s.json")
    with pytest.raises(DataNotProvided, match="nowhere: not found"):
        prepare_source(spec({"kind": "import"}), "ct", tmp_path / "dl4", tmp_path / "dl4" / "s.json", str(tmp_path / "nowhere"))

"""HTTP(S) downloads that resume, retry, verify and never leave a corrupt file under its final name.

The bytes go to `<dest>.partial`; an interrupted transfer continues from there with a Range request
(a server that ignores Range restarts it). Only a file whose sha256 matches the registry is renamed
onto `dest`; a mismatch removes the partial file and stops with both hashes and the URL.

Only https:// is fetched (also after a redirect): http:// and file:// need `insecure: true` on the
registry's file entry. A file without a checksum is refused unless its entry says
`allow_unpinned: true` (then the sha256 of what arrived is logged, to be pinned).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from tqdm import tqdm

from xmodseg.errors import InputDataError, XmodsegError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(XmodsegError):
    """A download failed for good (after retries) or was refused before starting."""


class ChecksumMismatch(InputDataError):
    """The downloaded bytes are not the registry's file."""


def sha256_of(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def check_free_space(folder: Path, needed: int, margin: float = 1.05) -> None:
    free = shutil.disk_usage(folder).free
    if needed * margin > free:
        raise DownloadError(f"{folder}: {needed / 1e9:.2f} GB needed (+5 %), only {free / 1e9:.2f} GB free")


def check_url(url: str, insecure: bool = False, redirected_from: str | None = None) -> None:
    """Refuse a URL that could be altered in transit or read local files: https only, unless the
    registry entry says `insecure: true` (then also http:// and file://)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "https" or (insecure and scheme in ("http", "file")):
        return
    where = f"{redirected_from} redirects to {url}" if redirected_from else url
    if scheme in ("http", "file"):
        raise DownloadError(f"{where}: refusing a {scheme}:// download (not authenticated); use an https:// URL, or set `insecure: true` on this file's registry entry")
    raise DownloadError(f"{where}: unsupported URL scheme '{scheme}' (only https://, or http:// and file:// with `insecure: true`)")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL `check_url` accepts (no silent https -> http downgrade)."""

    def __init__(self, insecure: bool) -> None:
        self.insecure = insecure

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        check_url(newurl, self.insecure, redirected_from=req.full_url)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, start: int, timeout: float, insecure: bool = False) -> http.client.HTTPResponse:
    req = urllib.request.Request(url, headers={"User-Agent": "xmodseg-downloader", **({"Range": f"bytes={start}-"} if start else {})})
    return urllib.request.build_opener(_CheckedRedirects(insecure)).open(req, timeout=timeout)  # noqa: S310 - scheme checked


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None,
    *,
    md5: str | None = None,
    size: int | None = None,
    insecure: bool = False,
    allow_unpinned: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch `url` to `dest` (skipped when `dest` already has the registry's hash). The registry
    gives sha256, or md5 where only that is published (MSD's archives); with neither the file is
    refused unless `allow_unpinned` (the registry says so), and the sha256 of what arrived is logged
    so it can be added. `insecure` (the registry says so) also accepts http:// and file://."""
    check_url(url, insecure)
    algorithm, expected = ("sha256", sha256) if sha256 else ("md5", md5) if md5 else ("sha256", None)
    if expected is None and not allow_unpinned:
        raise DownloadError(
            f"{url}: no checksum in the registry, so a changed or substituted file would go unnoticed; add `sha256: <hex>` "
            "to this file's entry (or `allow_unpinned: true` where none is published: its sha256 is then logged)"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and expected and sha256_of(dest, algorithm) == expected:
        log.info("%s: present, %s ok", dest, algorithm)
        return dest
    part = partial_path(dest)
    attempt = 0
    while True:
        start = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, start, size, timeout, progress, insecure)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # nothing left to send: the partial file may be complete
                break
            if exc.code not in RETRYABLE_HTTP or attempt >= retries:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            if isinstance(exc, DownloadError):
                raise
            if attempt >= retries:
                raise DownloadError(f"{url}: failed after {retries + 1} attempts ({exc}); {part} is kept, rerun to resume") from None
        attempt += 1
        wait = backoff * 2 ** (attempt - 1)
        log.warning("%s: attempt %d failed; retrying in %.1f s from byte %d", url, attempt, wait, part.stat().st_size if part.exists() else 0)
        time.sleep(wait)
    actual = sha256_of(part, algorithm)
    if expected is None:
        log.warning("%s: unpinned (allow_unpinned: true); downloaded file has sha256 %s (pin it: add it to the registry)", url, actual)
    elif actual != expected:
        part.unlink()
        raise ChecksumMismatch(f"{url}: {algorithm} {actual} does not match the registry's {expected}; the download was removed (nothing written to {dest})")
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, start: int, size: int | None, timeout: float, progress: bool, insecure: bool = False) -> None:
    with _open(url, start, timeout, insecure) as resp:
        status = getattr(resp, "status", 200)
        if start and status != 206:
            log.info("%s: server ignored the Range request; restarting", url)
            start = 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        if total:
            check_free_space(part.parent, total - start)
        mode = "ab" if start else "wb"
        received = 0
        with open(part, mode) as fh, tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name[:-8], disable=not progress, mininterval=2.0) as bar:
            while block := resp.read(CHUNK):
                fh.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)

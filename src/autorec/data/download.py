"""Download of the official MovieLens archives, verified against pinned SHA-256 digests.

Which archive, from where, of which size and digest: the registry
(:data:`autorec.data.registry.KNOWN_DATASETS`); a download whose digest differs is refused.
``ml-latest.zip`` is rebuilt by GroupLens from time to time and has no stable digest, so it is
refused unless the caller passes the digest they expect (``sha256=``, ``--sha256``): nothing
unverified is ever extracted. The Netflix Prize data has no official download; users bring their
own copy (see :func:`autorec.data.loaders.load_dataset`).

Safety: the archive is streamed to a hidden temporary file inside the data directory, its size and
digest are checked *before* anything is extracted, it is extracted into a hidden temporary folder
(members with absolute paths, ``..`` components or links are refused), and the data folder is then
moved into place with one ``os.rename``. An interrupted or failed download leaves nothing that a
loader could read as data (only ``<data dir>/<folder>/`` is ever read, and it appears complete or
not at all).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from autorec import __version__
from autorec.data.registry import (
    KNOWN_DATASETS,
    Archive,
    dataset_files,
    downloadable_names,
    resolve_data_dir,
)
from autorec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_BLOCK = 1 << 20
_TIMEOUT_S = 60.0

Progress = Callable[[int, int | None], None]
"""``progress(bytes_received, bytes_total_or_None)``, called after every block."""


def download_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    url: str | None = None,
    progress: Progress | None = None,
    sha256: str | None = None,
) -> Path:
    """Download, verify and extract a named MovieLens set; return its folder.

    Args:
        name: a downloadable name of :data:`~autorec.data.registry.KNOWN_DATASETS`.
        data_dir: the data directory (see :func:`~autorec.data.registry.resolve_data_dir`).
        url: full URL of the archive on a mirror; the pinned digest is still checked.
        progress: called with (bytes received, total or None) as the download goes.
        sha256: the expected digest, required for ``ml-latest`` (no pinned digest); for the
            other sets it must equal the pinned one.

    Returns:
        ``<data dir>/<folder>``. If the set is already there, nothing is downloaded.

    Raises:
        DataError: unknown or undownloadable set, network failure, short transfer, digest
            mismatch (the message holds both digests), or a bad archive.
    """
    key = name.lower()
    if key not in KNOWN_DATASETS:
        raise DataError(
            f"unknown data set {name!r}; downloadable: {', '.join(downloadable_names())}"
        )
    info = KNOWN_DATASETS[key]
    archive = info.archive
    if archive is None:
        raise DataError(
            f"{key} cannot be downloaded: the Netflix Prize data has no official download any "
            f"more. Put your copy's training_set/mv_*.txt (or combined_data_*.txt) under "
            f"{resolve_data_dir(data_dir) / info.folder}/"
        )
    expected = _expected_digest(key, archive, sha256)
    root = resolve_data_dir(data_dir)
    target = root / info.folder
    if dataset_files(key, root):
        logger.info("%s is already in %s", key, target)
        return target
    if target.exists():
        raise DataError(
            f"{target} exists but does not hold the {key} rating file; move it away and "
            f"download again"
        )
    root.mkdir(parents=True, exist_ok=True)
    source = url or archive.url
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key}-", suffix=".zip.part", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _fetch(source, out, progress)
        if digest != expected:
            raise DataError(
                f"{source}: sha256 mismatch: expected {expected}, got {digest} ({size:,} bytes"
                + (f", expected {archive.size:,}" if archive.size else "")
                + "); the download was deleted and nothing was extracted"
            )
        _extract(tmp, root, info.folder, key)
    finally:
        tmp.unlink(missing_ok=True)
    if not dataset_files(key, root):  # pragma: no cover - only with a wrong pinned archive
        raise DataError(f"{target}: the archive did not hold the {key} rating file")
    logger.info("downloaded %s to %s", key, target)
    return target


def _expected_digest(key: str, archive: Archive, sha256: str | None) -> str:
    given = None if sha256 is None else sha256.strip().lower()
    if given is not None and (len(given) != 64 or any(c not in "0123456789abcdef" for c in given)):
        raise ConfigError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if archive.sha256 is None:
        if given is None:
            raise DataError(
                f"{key}: {archive.filename} is rebuilt by GroupLens from time to time and has no "
                f"pinned sha256, so it is not downloaded unverified; pass the digest you expect "
                f"with --sha256 HEX, or download and unpack it yourself into the data directory"
            )
        return given
    if given is not None and given != archive.sha256:
        raise ConfigError(
            f"{key}: the given sha256 {given} differs from the pinned {archive.sha256}"
        )
    return archive.sha256


def _fetch(url: str, out, progress: Progress | None) -> tuple[str, int]:
    """Stream ``url`` into ``out``; return (sha256 hex digest, bytes). Short transfers raise."""
    request = urllib.request.Request(url, headers={"User-Agent": f"autorec-cf/{__version__}"})
    digest = hashlib.sha256()
    received = 0
    total: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                block = response.read(_BLOCK)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                received += len(block)
                if progress is not None:
                    progress(received, total)
    except urllib.error.HTTPError as exc:
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except http.client.IncompleteRead as exc:
        raise DataError(
            f"download of {url} was interrupted after {received + len(exc.partial):,} bytes"
            + (f" of {total:,}" if total else "")
            + "; nothing was kept, try again"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"download of {url} failed after {received:,} bytes: {reason}; nothing was kept"
        ) from None
    if total is not None and received != total:
        raise DataError(
            f"download of {url} was interrupted: received {received:,} of {total:,} bytes; "
            f"nothing was kept, try again"
        )
    return digest.hexdigest(), received


def _safe_members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for member in members:
        name = member.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        mode = member.external_attr >> 16
        if (
            name.startswith(("/", "\\"))
            or (len(name) > 1 and name[1] == ":")
            or ".." in parts
            or stat.S_ISLNK(mode)
        ):
            raise DataError(f"{archive}: refusing unsafe archive member {name!r}")
    return members


def _extract(archive: Path, root: Path, folder: str, key: str) -> None:
    """Extract into a hidden temporary folder, then move ``folder`` into place atomically."""
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-extract-", dir=root))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = _safe_members(zf, archive)
                for member in members:
                    dest = (staging / member.filename).resolve()
                    if not dest.is_relative_to(staging.resolve()):
                        raise DataError(
                            f"{archive}: refusing unsafe archive member {member.filename!r}"
                        )
                    zf.extract(member, staging)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{archive}: not a valid zip archive ({exc})") from None
        extracted = staging / folder
        if not extracted.is_dir():
            raise DataError(f"the {key} archive has no {folder}/ folder")
        target = root / folder
        try:
            os.rename(extracted, target)
        except OSError:
            if not dataset_files(key, root):
                raise DataError(f"cannot move the extracted {folder}/ to {target}") from None
            logger.info("%s appeared meanwhile; keeping it", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

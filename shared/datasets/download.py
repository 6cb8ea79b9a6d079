"""Download a published dataset file and verify files by git blob id.

:func:`fetch_file` downloads over HTTPS from ``<base_url>/<repository>/<commit>/<path>`` (by
default raw.githubusercontent.com), checks the blob id and only then moves the file into place.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from shared.datasets.errors import BlobIdMismatchError, DatasetError, DatasetFileMissingError
from shared.datasets.sources import PublishedFile

GITHUB_RAW_BASE_URL = "https://raw.githubusercontent.com"
DOWNLOAD_TIMEOUT_SECONDS = 60.0
_CHUNK_BYTES = 1 << 20

FetchAction = Literal["already_present", "downloaded"]


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What :func:`fetch_file` did for one file; the file at ``path`` is verified either way."""

    published: PublishedFile
    path: Path
    action: FetchAction


def git_blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob (``git hash-object``): sha1 of ``b"blob <len>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def git_blob_id_of_file(path: Path) -> str:
    """:func:`git_blob_id` of a file's content, read in chunks."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False)
    with path.open("rb") as content:
        while chunk := content.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def source_url(published: PublishedFile, base_url: str = GITHUB_RAW_BASE_URL) -> str:
    """``<base_url>/<repository>/<commit>/<path in repository>``, the path percent-quoted."""
    snapshot = published.snapshot
    quoted_path = urllib.parse.quote(published.repository_path)
    return f"{base_url.rstrip('/')}/{snapshot.repository}/{snapshot.commit}/{quoted_path}"


def verify_file(data_dir: Path, published: PublishedFile) -> Path:
    """Checks that ``data_dir/<local_path>`` exists and has the published blob id; returns its path.

    Raises:
        DatasetFileMissingError: the file is absent.
        BlobIdMismatchError: its content differs from the published file.
    """
    path = data_dir / published.local_path
    if not path.is_file():
        raise DatasetFileMissingError(data_dir, published.local_path)
    actual_blob_id = git_blob_id_of_file(path)
    if actual_blob_id != published.blob_id:
        raise BlobIdMismatchError(path, published.blob_id, actual_blob_id)
    return path


def fetch_file(
    data_dir: Path,
    published: PublishedFile,
    base_url: str = GITHUB_RAW_BASE_URL,
    timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> FetchOutcome:
    """Makes ``data_dir/<local_path>`` the published file, downloading it unless it already verifies.

    The download goes to a temporary file beside the destination and replaces the destination only
    after its blob id matches, so a failed or tampered download never leaves a wrong file in place.

    Raises:
        BlobIdMismatchError: the downloaded content is not the published file (nothing is written).
        DatasetError: the download failed (network error, HTTP error status, timeout).
    """
    try:
        return FetchOutcome(published, verify_file(data_dir, published), "already_present")
    except DatasetError:
        pass
    destination = data_dir / published.local_path
    destination.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(published, base_url)
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temporary_path = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as temporary_file:
            _download(url, temporary_file, timeout_seconds)
        actual_blob_id = git_blob_id_of_file(temporary_path)
        if actual_blob_id != published.blob_id:
            raise BlobIdMismatchError(destination, published.blob_id, actual_blob_id)
        temporary_path.chmod(0o644)  # mkstemp makes it owner-only; data files are for every reader
        temporary_path.replace(destination)
    finally:
        temporary_path.unlink(missing_ok=True)
    return FetchOutcome(published, destination, "downloaded")


def _download(url: str, destination: BinaryIO, timeout_seconds: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            shutil.copyfileobj(response, destination, _CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as error:  # URLError and timeouts are OSErrors
        raise DatasetError(f"could not download {url}: {error}") from error

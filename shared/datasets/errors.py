"""Errors raised while locating, reading or verifying the public datasets.

Every failure of the dataset readers and of the fetch command is a :class:`DatasetError`, so a caller
can catch one type. The subclasses carry the facts a caller may act on (which file, which line,
which blob ids) as attributes as well as in the message.

These errors stay on the offline side (loaders, the fetch command, evaluation scripts) and derive
from ``Exception``, not from ``shared.errors.BundlewiseError``: that base imports grpc, and the
readers must run with the standard library alone.
"""

from __future__ import annotations

from pathlib import Path

FETCH_COMMAND = "bundlewise fetch-data (python -m shared.datasets.fetch --dest DATA_DIR)"
"""How a user gets the data files; quoted by every missing-file message."""


class DatasetError(Exception):
    """A dataset file is missing, malformed, inconsistent or not the published version."""


class DatasetFileMissingError(DatasetError):
    """A file or folder the reader needs does not exist under the data folder."""

    def __init__(self, data_dir: Path, relative_path: str) -> None:
        self.data_dir = data_dir
        self.relative_path = relative_path
        super().__init__(
            f"missing dataset file {relative_path} under data dir {data_dir}; "
            f"fetch the datasets with `{FETCH_COMMAND}` or set BUNDLEWISE_DATA_DIR "
            "to a folder that holds them"
        )


class MalformedLineError(DatasetError):
    """A record of a dataset file does not have the expected shape.

    ``line`` is the 1-based physical line where the record starts.
    """

    def __init__(self, path: Path, line: int, expected: str, found: str) -> None:
        self.path = path
        self.line = line
        self.expected = expected
        self.found = found
        super().__init__(f"{path}:{line}: expected {expected}, found {found}")


class BlobIdMismatchError(DatasetError):
    """A file's git blob id differs from the id of the published file."""

    def __init__(self, path: Path, expected_blob_id: str, actual_blob_id: str) -> None:
        self.path = path
        self.expected_blob_id = expected_blob_id
        self.actual_blob_id = actual_blob_id
        super().__init__(
            f"{path} is not the published file: expected git blob {expected_blob_id}, got {actual_blob_id}"
        )

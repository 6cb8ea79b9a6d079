"""Where the dataset files live, and checked access to one of them."""

from __future__ import annotations

import os
from pathlib import Path

from shared.datasets.errors import DatasetFileMissingError

DATA_DIR_VARIABLE = "BUNDLEWISE_DATA_DIR"

YOUSHU_FOLDER = "Youshu"
AMAZON_FOLDER = "BundleRec_Amazon"
STEAM_FOLDER = "Steam_bundles"


def default_data_dir() -> Path:
    """The data folder a process should use when its caller names none.

    ``$BUNDLEWISE_DATA_DIR`` when set; otherwise ``<repository root>/../shared/data``, found from
    this file's location. The folder is not checked to exist: the readers report a missing file
    with :class:`DatasetFileMissingError` when they need it.
    """
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured)
    repository_root = Path(__file__).resolve().parents[2]
    return (repository_root.parent / "shared" / "data").resolve()


def require_file(data_dir: Path, relative_path: str) -> Path:
    """``data_dir / relative_path`` if it is an existing file.

    Raises:
        DatasetFileMissingError: the file does not exist (or is not a regular file).
    """
    path = data_dir / relative_path
    if not path.is_file():
        raise DatasetFileMissingError(data_dir, relative_path)
    return path

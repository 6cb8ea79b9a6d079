"""Fetch the dataset files from their public repositories and verify them by git blob id.

Usage::

    python -m shared.datasets.fetch --dest DIR [--dataset youshu|amazon|steam|all] [--verify-only]

Without ``--verify-only`` each file that is absent or differs is downloaded over HTTPS from
``https://raw.githubusercontent.com/<repository>/<commit>/<path>`` (see
:mod:`shared.datasets.sources`), checked against its blob id, and only then moved into place; a
file already present and verified is left alone. With ``--verify-only`` nothing is downloaded.
The exit status is 0 when every file verifies, 1 otherwise; each problem is printed on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

from shared.datasets.data_dir import default_data_dir
from shared.datasets.download import GITHUB_RAW_BASE_URL, fetch_file, verify_file
from shared.datasets.errors import DatasetError
from shared.datasets.sources import DATASET_NAMES, DatasetName, published_files


def main(argv: Sequence[str] | None = None) -> int:
    """The fetch command; returns the process exit status (0: every file verified)."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.datasets.fetch",
        description="Download the public bundle datasets and verify every file by git blob id.",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="data folder to fill or check (default: $BUNDLEWISE_DATA_DIR, else ../shared/data)",
    )
    parser.add_argument("--dataset", choices=(*DATASET_NAMES, "all"), default="all")
    parser.add_argument("--verify-only", action="store_true", help="check the files; download nothing")
    parser.add_argument("--base-url", default=GITHUB_RAW_BASE_URL, help="mirror serving <repo>/<commit>/<path>")
    arguments = parser.parse_args(argv)
    data_dir: Path = arguments.dest if arguments.dest is not None else default_data_dir()
    dataset = cast(DatasetName | Literal["all"], arguments.dataset)

    failures = 0
    for published in published_files(dataset):
        try:
            if arguments.verify_only:
                verify_file(data_dir, published)
                print(f"ok          {published.local_path}")
            else:
                outcome = fetch_file(data_dir, published, arguments.base_url)
                print(f"{'downloaded' if outcome.action == 'downloaded' else 'ok':<11} {published.local_path}")
        except DatasetError as error:
            failures += 1
            print(f"FAILED      {published.local_path}: {error}", file=sys.stderr)
    if failures:
        print(f"{failures} file(s) failed under {data_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

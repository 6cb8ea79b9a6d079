"""Reader for Youshu, the standard bundle-recommendation benchmark (BGCN / CrossCBR format).

Layout under ``<data_dir>/Youshu/``: ``Youshu_data_size.txt`` (``n_users\\tn_bundles\\tn_items``),
``user_bundle_{train,tune,test}.txt``, ``user_item.txt`` and ``bundle_item.txt`` (one
``id\\tid`` pair per line, 0-based, no header), and the CoHeat U-B splits in
``coheat_splits/{cold,all}/user_bundle_{train,tune,test}.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.datasets.data_dir import YOUSHU_FOLDER, require_file
from shared.datasets.errors import MalformedLineError

YoushuSplitName = Literal["standard", "cold", "all"]
"""``standard``: the BGCN/CrossCBR split (CoHeat's ``warm`` is byte-identical);
``cold``: CoHeat's bundle-disjoint split (tune/test bundles never occur in train);
``all``: CoHeat's split mixing warm and cold test bundles."""

SIZES_FILE = f"{YOUSHU_FOLDER}/Youshu_data_size.txt"


@dataclass(frozen=True, slots=True)
class YoushuSplit:
    """One U-B split of Youshu with the shared U-I and B-I graphs.

    Every pair keeps file order; ids are 0-based and below the matching ``n_*``. The literature
    trains on ``user_bundle_train`` plus all of ``user_item`` and ``bundle_item``, selects on
    ``user_bundle_tune`` and reports on ``user_bundle_test``.
    """

    split: YoushuSplitName
    n_users: int
    n_bundles: int
    n_items: int
    user_bundle_train: list[tuple[int, int]]
    """(user id, bundle id) pairs."""
    user_bundle_tune: list[tuple[int, int]]
    """(user id, bundle id) pairs."""
    user_bundle_test: list[tuple[int, int]]
    """(user id, bundle id) pairs."""
    user_item: list[tuple[int, int]]
    """(user id, item id) pairs."""
    bundle_item: list[tuple[int, int]]
    """(bundle id, item id) pairs."""


def load_youshu(data_dir: Path, split: YoushuSplitName = "standard") -> YoushuSplit:
    """Reads Youshu from ``data_dir/Youshu``.

    ``split`` picks the U-B files: ``standard`` reads them from the top of the folder, ``cold`` and
    ``all`` from ``coheat_splits/<split>/``; U-I and B-I always come from the top.

    Raises:
        DatasetFileMissingError: a file is absent.
        MalformedLineError: a line is not two integers, or an id is outside
            ``[0, n)`` for the sizes in ``Youshu_data_size.txt`` (the error names file and line).
    """
    n_users, n_bundles, n_items = _read_sizes(require_file(data_dir, SIZES_FILE))
    user_bundle_folder = YOUSHU_FOLDER if split == "standard" else f"{YOUSHU_FOLDER}/coheat_splits/{split}"

    def user_bundle_pairs(part: str) -> list[tuple[int, int]]:
        path = require_file(data_dir, f"{user_bundle_folder}/user_bundle_{part}.txt")
        return _read_id_pairs(path, ("user id", n_users), ("bundle id", n_bundles))

    return YoushuSplit(
        split=split,
        n_users=n_users,
        n_bundles=n_bundles,
        n_items=n_items,
        user_bundle_train=user_bundle_pairs("train"),
        user_bundle_tune=user_bundle_pairs("tune"),
        user_bundle_test=user_bundle_pairs("test"),
        user_item=_read_id_pairs(
            require_file(data_dir, f"{YOUSHU_FOLDER}/user_item.txt"),
            ("user id", n_users),
            ("item id", n_items),
        ),
        bundle_item=_read_id_pairs(
            require_file(data_dir, f"{YOUSHU_FOLDER}/bundle_item.txt"),
            ("bundle id", n_bundles),
            ("item id", n_items),
        ),
    )


def _read_sizes(path: Path) -> tuple[int, int, int]:
    with path.open(encoding="utf-8") as sizes_file:
        first_line = sizes_file.readline()
    fields = first_line.split()
    expected = "three positive integers n_users, n_bundles, n_items separated by tabs"
    if len(fields) != 3 or not all(_is_decimal(field) and int(field) > 0 for field in fields):
        raise MalformedLineError(path, 1, expected, repr(first_line))
    return int(fields[0]), int(fields[1]), int(fields[2])


def _read_id_pairs(path: Path, first: tuple[str, int], second: tuple[str, int]) -> list[tuple[int, int]]:
    """The ``first\\tsecond`` integer pairs of ``path``; ``first``/``second`` are (name, exclusive bound)."""
    first_name, first_bound = first
    second_name, second_bound = second
    pairs: list[tuple[int, int]] = []
    with path.open(encoding="utf-8") as pairs_file:
        for line_number, line in enumerate(pairs_file, start=1):
            fields = line.split()
            if len(fields) != 2 or not (_is_decimal(fields[0]) and _is_decimal(fields[1])):
                raise MalformedLineError(
                    path, line_number, f"two non-negative integers '{first_name}\\t{second_name}'", repr(line)
                )
            first_id, second_id = int(fields[0]), int(fields[1])
            if first_id >= first_bound:
                raise MalformedLineError(path, line_number, f"{first_name} in [0, {first_bound})", str(first_id))
            if second_id >= second_bound:
                raise MalformedLineError(path, line_number, f"{second_name} in [0, {second_bound})", str(second_id))
            pairs.append((first_id, second_id))
    return pairs


def _is_decimal(text: str) -> bool:
    """True for a plain ASCII run of digits (``str.isdigit`` alone also accepts e.g. superscripts)."""
    return text.isascii() and text.isdigit()

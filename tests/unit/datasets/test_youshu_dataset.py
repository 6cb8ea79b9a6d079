"""Specification of the Youshu reader, against the real files in the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.datasets import (
    DatasetFileMissingError,
    MalformedLineError,
    YoushuSplit,
    default_data_dir,
    load_youshu,
)

DATA_DIR = default_data_dir()


@pytest.fixture(scope="module")
def standard() -> YoushuSplit:
    return load_youshu(DATA_DIR)


def bundles_of(pairs: list[tuple[int, int]]) -> set[int]:
    return {bundle_id for _, bundle_id in pairs}


def test_standard_split_has_the_documented_sizes_and_pair_counts(standard: YoushuSplit) -> None:
    assert standard.split == "standard"
    assert (standard.n_users, standard.n_bundles, standard.n_items) == (8039, 4771, 32770)
    assert len(standard.user_bundle_train) == 34_416
    assert len(standard.user_bundle_tune) == 5_189
    assert len(standard.user_bundle_test) == 9_746
    assert len(standard.user_item) == 138_515
    assert len(standard.bundle_item) == 176_667


def test_pairs_keep_file_order(standard: YoushuSplit) -> None:
    assert standard.user_bundle_train[:2] == [(0, 2382), (0, 3026)]


def test_standard_splits_share_no_pair_and_cover_2959_users(standard: YoushuSplit) -> None:
    train, tune, test = (
        set(standard.user_bundle_train),
        set(standard.user_bundle_tune),
        set(standard.user_bundle_test),
    )
    assert train.isdisjoint(tune)
    assert train.isdisjoint(test)
    assert tune.isdisjoint(test)
    assert len({user_id for user_id, _ in train | tune | test}) == 2_959


def test_cold_split_holds_out_whole_bundles(standard: YoushuSplit) -> None:
    cold = load_youshu(DATA_DIR, "cold")

    assert (len(cold.user_bundle_train), len(cold.user_bundle_tune), len(cold.user_bundle_test)) == (
        33_468,
        4_498,
        11_385,
    )
    train_bundles = bundles_of(cold.user_bundle_train)
    assert len(bundles_of(cold.user_bundle_tune)) == 476
    assert len(bundles_of(cold.user_bundle_test)) == 945
    assert train_bundles.isdisjoint(bundles_of(cold.user_bundle_tune))
    assert train_bundles.isdisjoint(bundles_of(cold.user_bundle_test))
    assert cold.user_item == standard.user_item
    assert cold.bundle_item == standard.bundle_item


def test_all_split_mixes_warm_and_cold_test_bundles() -> None:
    mixed = load_youshu(DATA_DIR, "all")

    assert (len(mixed.user_bundle_train), len(mixed.user_bundle_tune), len(mixed.user_bundle_test)) == (
        33_475,
        5_444,
        10_432,
    )
    test_bundles = bundles_of(mixed.user_bundle_test)
    assert len(test_bundles) == 1_998
    assert len(test_bundles & bundles_of(mixed.user_bundle_train)) == 1_340


def write_youshu(root: Path, files: dict[str, str]) -> Path:
    """A Youshu folder under ``root`` holding tiny valid files, with ``files`` replacing some."""
    contents = {
        "Youshu_data_size.txt": "3\t2\t5\n",
        "user_bundle_train.txt": "0\t1\n2\t0\n",
        "user_bundle_tune.txt": "1\t1\n",
        "user_bundle_test.txt": "1\t0\n",
        "user_item.txt": "0\t4\n",
        "bundle_item.txt": "0\t3\n1\t4\n",
    } | files
    folder = root / "Youshu"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).write_text(text, encoding="utf-8")
    return root


def test_tiny_valid_folder_loads(tmp_path: Path) -> None:
    youshu = load_youshu(write_youshu(tmp_path, {}))

    assert (youshu.n_users, youshu.n_bundles, youshu.n_items) == (3, 2, 5)
    assert youshu.user_bundle_train == [(0, 1), (2, 0)]
    assert youshu.bundle_item == [(0, 3), (1, 4)]


def test_bundle_id_beyond_the_declared_size_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data_dir = write_youshu(tmp_path, {"user_bundle_train.txt": "0\t1\n2\t2\n"})

    with pytest.raises(MalformedLineError) as raised:
        load_youshu(data_dir)

    assert raised.value.path == data_dir / "Youshu" / "user_bundle_train.txt"
    assert raised.value.line == 2
    assert str(raised.value) == f"{data_dir}/Youshu/user_bundle_train.txt:2: expected bundle id in [0, 2), found 2"


def test_line_that_is_not_two_integers_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data_dir = write_youshu(tmp_path, {"bundle_item.txt": "0\t3\n1\t4\n1\tfour\n"})

    with pytest.raises(MalformedLineError, match=r"bundle_item\.txt:3: expected two non-negative integers"):
        load_youshu(data_dir)


def test_sizes_file_must_hold_three_positive_integers(tmp_path: Path) -> None:
    data_dir = write_youshu(tmp_path, {"Youshu_data_size.txt": "3\t2\n"})

    with pytest.raises(MalformedLineError, match=r"Youshu_data_size\.txt:1: expected three positive integers"):
        load_youshu(data_dir)


def test_missing_cold_split_names_the_file_the_folder_and_the_fetch_command(tmp_path: Path) -> None:
    data_dir = write_youshu(tmp_path, {})

    with pytest.raises(DatasetFileMissingError) as raised:
        load_youshu(data_dir, "cold")

    assert raised.value.relative_path == "Youshu/coheat_splits/cold/user_bundle_train.txt"
    assert str(data_dir) in str(raised.value)
    assert "bundlewise fetch-data" in str(raised.value)

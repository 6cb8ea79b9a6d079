"""Specification of blob-id verification and of the fetch command (downloads from a local server)."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.datasets import (
    PUBLISHED_FILES,
    BlobIdMismatchError,
    DatasetError,
    DatasetFileMissingError,
    PublishedFile,
    default_data_dir,
    fetch_file,
    git_blob_id,
    git_blob_id_of_file,
    published_files,
    source_url,
    verify_file,
)
from shared.datasets.fetch import main

DATA_DIR = default_data_dir()


def test_blob_id_is_the_one_git_hash_object_prints() -> None:
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_blob_id_of_a_file_equals_the_blob_id_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "greeting.txt"
    path.write_bytes(b"hello\n")

    assert git_blob_id_of_file(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.parametrize("published", PUBLISHED_FILES, ids=lambda published: published.local_path)
def test_every_file_of_the_shared_data_folder_is_the_published_version(published: PublishedFile) -> None:
    path = verify_file(DATA_DIR, published)

    assert path.stat().st_size == published.size_bytes


def test_the_table_lists_every_data_file_of_the_shared_data_folder() -> None:
    data_files = {
        path.relative_to(DATA_DIR).as_posix() for path in DATA_DIR.rglob("*") if path.is_file() and path.suffix != ".md"
    }

    assert data_files == {published.local_path for published in PUBLISHED_FILES}


def test_blob_ids_agree_with_those_source_md_lists() -> None:
    checked = 0
    for published in PUBLISHED_FILES:
        if published.blob_id_origin == "project_copy":
            continue
        source_md = (DATA_DIR / published.local_path).parent / "SOURCE.md"
        lines_naming_file = [
            line for line in source_md.read_text(encoding="utf-8").splitlines() if f"`{published.file_name}`" in line
        ]
        listed_ids = {blob_id for line in lines_naming_file for blob_id in re.findall(r"\b[0-9a-f]{8,40}\b", line)}
        expected = published.blob_id if published.blob_id_origin == "listed" else published.blob_id[:8]
        assert expected in listed_ids, published.local_path
        checked += 1
    assert checked == 8


def test_source_url_points_at_the_file_at_its_commit() -> None:
    steam_bundles, _ = published_files("steam")

    assert source_url(steam_bundles) == (
        "https://raw.githubusercontent.com/zhubzy/proj2158/236f2ab707490797d750047e557b319cc5c3ba6d/bundle_data.json.gz"
    )
    youshu_sizes = published_files("youshu")[0]
    assert source_url(youshu_sizes, "http://127.0.0.1:8000/") == (
        "http://127.0.0.1:8000/mysbupt/CrossCBR/49717496a4be9cda72209645631634d58dd39d23/"
        "datasets/Youshu/Youshu_data_size.txt"
    )


def test_changed_file_fails_verification_naming_file_and_both_blob_ids(tmp_path: Path) -> None:
    sizes = published_files("youshu")[0]
    copy = tmp_path / sizes.local_path
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"8039\t4771\t32771\n")

    with pytest.raises(BlobIdMismatchError) as raised:
        verify_file(tmp_path, sizes)

    assert raised.value.path == copy
    assert raised.value.expected_blob_id == "1a254b9daeed62522e25765aefd7c91d4de699dd"
    assert raised.value.actual_blob_id == git_blob_id(b"8039\t4771\t32771\n")
    assert str(copy) in str(raised.value)


def test_absent_file_fails_verification_as_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileMissingError, match=r"missing dataset file Steam_bundles/bundle_data\.json\.gz"):
        verify_file(tmp_path, published_files("steam")[0])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output clean."""


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving ``<repo>/<commit>/<path>``; yields (base URL, its root)."""
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1")  # a configured HTTP proxy must not see these requests
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish(mirror_root: Path, published: PublishedFile, content: bytes | None = None) -> None:
    """Puts the real file (or ``content`` instead) where the mirror serves ``published``."""
    snapshot = published.snapshot
    target = mirror_root / snapshot.repository / snapshot.commit / published.repository_path
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        shutil.copyfile(DATA_DIR / published.local_path, target)
    else:
        target.write_bytes(content)


def test_fetch_downloads_verified_files_and_rejects_a_tampered_one(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base_url, mirror_root = mirror
    sizes, train, tune = published_files("youshu")[:3]
    publish(mirror_root, sizes)
    publish(mirror_root, train)
    genuine_tune = (DATA_DIR / tune.local_path).read_bytes()
    publish(mirror_root, tune, genuine_tune.replace(b"\t", b" ", 1))
    dest = tmp_path / "data"

    outcomes = [fetch_file(dest, published, base_url) for published in (sizes, train)]
    with pytest.raises(BlobIdMismatchError) as raised:
        fetch_file(dest, tune, base_url)

    assert [outcome.action for outcome in outcomes] == ["downloaded", "downloaded"]
    assert (dest / sizes.local_path).read_bytes() == (DATA_DIR / sizes.local_path).read_bytes()
    assert git_blob_id_of_file(dest / train.local_path) == train.blob_id
    assert raised.value.path == dest / tune.local_path
    assert raised.value.expected_blob_id == tune.blob_id
    assert raised.value.actual_blob_id == git_blob_id(genuine_tune.replace(b"\t", b" ", 1))
    assert sorted(path.name for path in (dest / "Youshu").iterdir()) == [
        "Youshu_data_size.txt",
        "user_bundle_train.txt",
    ]


def test_fetch_leaves_a_verified_file_alone(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = mirror
    sizes = published_files("youshu")[0]
    (tmp_path / "Youshu").mkdir()
    shutil.copyfile(DATA_DIR / sizes.local_path, tmp_path / sizes.local_path)

    assert fetch_file(tmp_path, sizes, base_url).action == "already_present"


def test_fetch_replaces_a_changed_local_file(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base_url, mirror_root = mirror
    sizes = published_files("youshu")[0]
    publish(mirror_root, sizes)
    (tmp_path / "Youshu").mkdir()
    (tmp_path / sizes.local_path).write_bytes(b"1\t1\t1\n")

    assert fetch_file(tmp_path, sizes, base_url).action == "downloaded"
    assert git_blob_id_of_file(tmp_path / sizes.local_path) == sizes.blob_id


def test_file_the_server_lacks_is_a_dataset_error_naming_the_url(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = mirror
    sizes = published_files("youshu")[0]

    with pytest.raises(
        DatasetError, match=f"could not download {re.escape(source_url(sizes, base_url))}: HTTP Error 404"
    ):
        fetch_file(tmp_path, sizes, base_url)
    assert not (tmp_path / "Youshu").exists() or not any((tmp_path / "Youshu").iterdir())


def test_command_fetches_a_dataset_then_verifies_it(
    mirror: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url, mirror_root = mirror
    for published in published_files("steam"):
        publish(mirror_root, published)
    dest = str(tmp_path / "data")

    fetched = main(["--dest", dest, "--dataset", "steam", "--base-url", base_url])
    verified = main(["--dest", dest, "--dataset", "steam", "--verify-only"])

    assert (fetched, verified) == (0, 0)
    assert capsys.readouterr().out.splitlines() == [
        "downloaded  Steam_bundles/bundle_data.json.gz",
        "downloaded  Steam_bundles/steam_games.json.gz",
        "ok          Steam_bundles/bundle_data.json.gz",
        "ok          Steam_bundles/steam_games.json.gz",
    ]


def test_command_verifies_the_shared_data_folder() -> None:
    assert main(["--dest", str(DATA_DIR), "--verify-only"]) == 0


def test_command_reports_each_missing_file_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--dest", str(tmp_path), "--dataset", "steam", "--verify-only"])

    errors = capsys.readouterr().err
    assert status == 1
    assert "FAILED      Steam_bundles/bundle_data.json.gz: missing dataset file" in errors
    assert "FAILED      Steam_bundles/steam_games.json.gz: missing dataset file" in errors
    assert f"2 file(s) failed under {tmp_path}" in errors


def test_data_dir_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_DATA_DIR", "/srv/bundlewise-data")

    assert default_data_dir() == Path("/srv/bundlewise-data")


def test_data_dir_defaults_to_shared_data_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLEWISE_DATA_DIR", raising=False)

    assert default_data_dir() == Path(__file__).resolve().parents[4] / "shared" / "data"

"""Where each dataset file was published, and the git blob id of the exact version the project uses.

The facts come from each dataset's ``SOURCE.md`` (repository, commit, path). ``blob_id_origin`` says
how far the id is independent of the project's own copy:

- ``listed``: SOURCE.md gives the full blob id (Steam);
- ``listed_prefix``: SOURCE.md gives the first 8 hex digits; the full id is the project's copy's,
  which begins with them (Youshu standard files);
- ``project_copy``: SOURCE.md gives none; the id is the project's copy's, which SOURCE.md says was
  copied verbatim from that commit (BundleRec_Amazon, CoHeat splits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DatasetName = Literal["youshu", "amazon", "steam"]
DATASET_NAMES: tuple[DatasetName, ...] = get_args(DatasetName)

BlobIdOrigin = Literal["listed", "listed_prefix", "project_copy"]


@dataclass(frozen=True, slots=True)
class RepositorySnapshot:
    """A folder of a public GitHub repository at one commit."""

    repository: str
    """``owner/name`` on GitHub."""
    commit: str
    """Full 40-hex commit id (raw.githubusercontent.com serves any commit id of the repository)."""
    folder: str
    """Folder inside the repository, ``""`` for the root."""


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """One data file: where it lives under the data folder, where it was published, and its blob id."""

    dataset: DatasetName
    local_path: str
    """Path relative to the data folder, ``/``-separated, e.g. ``Youshu/user_item.txt``."""
    snapshot: RepositorySnapshot
    file_name: str
    """Name inside ``snapshot.folder``."""
    blob_id: str
    """``git hash-object`` of the file: sha1 of ``b"blob <size>\\0" + content``, 40 lowercase hex."""
    size_bytes: int
    blob_id_origin: BlobIdOrigin

    @property
    def repository_path(self) -> str:
        """Path of the file inside the repository."""
        return f"{self.snapshot.folder}/{self.file_name}" if self.snapshot.folder else self.file_name


_CROSSCBR_YOUSHU = RepositorySnapshot("mysbupt/CrossCBR", "49717496a4be9cda72209645631634d58dd39d23", "datasets/Youshu")
_COHEAT_COLD = RepositorySnapshot("ColdBundle/CoHeat", "8e482fdd6a7da50ade7ea5d8e85cd4922c34e0fa", "data/cold/Youshu")
_COHEAT_ALL = RepositorySnapshot("ColdBundle/CoHeat", "8e482fdd6a7da50ade7ea5d8e85cd4922c34e0fa", "data/all/Youshu")
_BUNDLEREC_COMMIT = "087da2e2b4d8738ef23f3f6f2005505e8685edde"
_BUNDLEREC_ELECTRONIC = RepositorySnapshot("BundleRec/bundle_recommendation", _BUNDLEREC_COMMIT, "dataset/electronic")
_BUNDLEREC_CLOTHING = RepositorySnapshot("BundleRec/bundle_recommendation", _BUNDLEREC_COMMIT, "dataset/clothing")
_UCSD_STEAM = RepositorySnapshot("zhubzy/proj2158", "236f2ab707490797d750047e557b319cc5c3ba6d", "")


def _folder(
    dataset: DatasetName,
    local_folder: str,
    snapshot: RepositorySnapshot,
    origin: BlobIdOrigin,
    files: tuple[tuple[str, str, int], ...],
) -> tuple[PublishedFile, ...]:
    """The files (name, blob id, size) of one snapshot folder, stored under ``local_folder``."""
    return tuple(
        PublishedFile(dataset, f"{local_folder}/{name}", snapshot, name, blob_id, size, origin)
        for name, blob_id, size in files
    )


PUBLISHED_FILES: tuple[PublishedFile, ...] = (
    *_folder(
        "youshu",
        "Youshu",
        _CROSSCBR_YOUSHU,
        "listed_prefix",
        (
            ("Youshu_data_size.txt", "1a254b9daeed62522e25765aefd7c91d4de699dd", 16),
            ("user_bundle_train.txt", "7c95d4900e958cb00f78cb9a5a2b47e0a416bd4d", 331589),
            ("user_bundle_tune.txt", "9061d22e7bd1d6f5ddf5ce0676b70665bcb50be8", 49984),
            ("user_bundle_test.txt", "2c48e10b27374f706ff8e5f47cde263b071bf4aa", 93865),
            ("user_item.txt", "5245e2aaa5c97748b7070dfd114a22b4013a3068", 1458987),
            ("bundle_item.txt", "7df062c633a2d37668bc1149872f8d459e2cff81", 1844454),
        ),
    ),
    *_folder(
        "youshu",
        "Youshu/coheat_splits/cold",
        _COHEAT_COLD,
        "project_copy",
        (
            ("user_bundle_train.txt", "53f0c244af1a50674b5db5f3e56e780c0cf6d51e", 322728),
            ("user_bundle_tune.txt", "558a3e6e872a41bfa27203e6a5420124a34b0d0f", 43203),
            ("user_bundle_test.txt", "e97326a41153f35e56796214a2882f3b8296e6c7", 109507),
        ),
    ),
    *_folder(
        "youshu",
        "Youshu/coheat_splits/all",
        _COHEAT_ALL,
        "project_copy",
        (
            ("user_bundle_train.txt", "bc9cda3de0250835e4c65fe45a1c85a08fb15534", 322720),
            ("user_bundle_tune.txt", "f4eff12a811b28a069193dd546890237ee43780f", 52583),
            ("user_bundle_test.txt", "324fee31bc3004bbfa6b753b01f97cc1c16f693e", 100135),
        ),
    ),
    *_folder(
        "amazon",
        "BundleRec_Amazon/electronic",
        _BUNDLEREC_ELECTRONIC,
        "project_copy",
        (
            ("bundle_intent.csv", "6007199ce2375c99feff5d94ccc746c351089ef1", 45807),
            ("bundle_item.csv", "4b2d1235ef7ab4736c812d5a77f53c40b66ef4b9", 66259),
            ("item_categories.csv", "cab4e213cbf6426f9df3915222f5518014c8d8b1", 320055),
            ("item_idx_mapping.csv", "76d261d0079d30618f0fbecb7f813f1efb7b9558", 3106534),
            ("item_titles.csv", "29f336b82e61c9480a4c82646dd4272b6ebbc331", 342557),
            ("session_bundle.csv", "b01bb240014c158c30bd2f7470a25d13949344fa", 14451),
            ("session_item.csv", "bd8cff90cfa7638d4c981ab79e74d72d059742fc", 67885),
            ("user_bundle.csv", "1c98eaca2e1bc6f25af31aeabd8d21f0ea3f2ee2", 33784),
            ("user_idx_mapping.csv", "6c13a6b96058c05dda5f2beb9406f30423dce5d7", 16553),
            ("user_item.csv", "e8374c5765d78bea93a7812dcad1eb8eee238420", 131524),
            ("user_session.csv", "195b47102fce8c60846a17daa04ac47b44eb41ca", 21955),
        ),
    ),
    *_folder(
        "amazon",
        "BundleRec_Amazon/clothing",
        _BUNDLEREC_CLOTHING,
        "project_copy",
        (
            ("bundle_intent.csv", "a0b15bc4f5f1a6401b85789a1dc606cbdaabde97", 49162),
            ("bundle_item.csv", "0e6a4f85bb48ac9a0955a661212f2879a9bccd76", 69813),
            ("item_categories.csv", "54c6ab172190323b51026b98d790687ff0bb98ac", 638675),
            ("item_idx_mapping.csv", "23f9e683291aa712b08218f8e1949c208a2214c1", 4169902),
            ("item_titles.csv", "7b84197c0e05db52c379c689da2624ca974dcdde", 299249),
            ("session_bundle.csv", "743efb62c969bd5c5f7d4345690b8a1b0a3c811f", 15880),
            ("session_item.csv", "eaf6ea3ba52a3469dd3461cb5583cada6dc3f792", 72356),
            ("user_bundle.csv", "bc3d44b6b1eeb62991ea78623046dddeb3e25512", 36989),
            ("user_idx_mapping.csv", "184af69ec51c2c91942050bfae6e4722f8e44627", 18005),
            ("user_item.csv", "c4c2cdbc71955c4314ef7c9ccc714bb228004713", 136473),
            ("user_session.csv", "96c43870916dd9088e5ea276dd5fd718b72ad075", 18200),
        ),
    ),
    *_folder(
        "steam",
        "Steam_bundles",
        _UCSD_STEAM,
        "listed",
        (
            ("bundle_data.json.gz", "73cf074c1162aa37c9b149742edf1380199dac3a", 91948),
            ("steam_games.json.gz", "42f3ce6beccded36df696892c46da68454d59eb7", 2740516),
        ),
    ),
)
"""Every file the readers use, in the order the fetch command handles them."""


def published_files(dataset: DatasetName | Literal["all"]) -> tuple[PublishedFile, ...]:
    """The files of one dataset, or of every dataset for ``"all"``."""
    if dataset == "all":
        return PUBLISHED_FILES
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {(*DATASET_NAMES, 'all')}")
    return tuple(published for published in PUBLISHED_FILES if published.dataset == dataset)

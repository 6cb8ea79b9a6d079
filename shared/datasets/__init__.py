"""Typed readers for the public bundle datasets and the command that fetches and verifies them.

Every reader takes the data folder as a ``Path`` (:func:`default_data_dir` resolves the usual one)
and raises :class:`DatasetError` subclasses naming the file, and the line where one is at fault.
"""

from shared.datasets.amazon import (
    AMAZON_DOMAINS,
    AmazonBundle,
    AmazonDomain,
    AmazonDomainName,
    AmazonItem,
    AmazonSession,
    load_amazon_domain,
    parse_category_paths,
)
from shared.datasets.data_dir import DATA_DIR_VARIABLE, default_data_dir
from shared.datasets.download import fetch_file, git_blob_id, git_blob_id_of_file, source_url, verify_file
from shared.datasets.errors import (
    BlobIdMismatchError,
    DatasetError,
    DatasetFileMissingError,
    MalformedLineError,
)
from shared.datasets.sources import PUBLISHED_FILES, DatasetName, PublishedFile, published_files
from shared.datasets.steam import (
    SteamBundle,
    SteamBundleItem,
    SteamCatalog,
    SteamGame,
    load_steam,
    parse_discount,
    parse_price,
)
from shared.datasets.youshu import YoushuSplit, YoushuSplitName, load_youshu

__all__ = [
    "AMAZON_DOMAINS",
    "DATA_DIR_VARIABLE",
    "PUBLISHED_FILES",
    "AmazonBundle",
    "AmazonDomain",
    "AmazonDomainName",
    "AmazonItem",
    "AmazonSession",
    "BlobIdMismatchError",
    "DatasetError",
    "DatasetFileMissingError",
    "DatasetName",
    "MalformedLineError",
    "PublishedFile",
    "SteamBundle",
    "SteamBundleItem",
    "SteamCatalog",
    "SteamGame",
    "YoushuSplit",
    "YoushuSplitName",
    "default_data_dir",
    "fetch_file",
    "git_blob_id",
    "git_blob_id_of_file",
    "load_amazon_domain",
    "load_steam",
    "load_youshu",
    "parse_category_paths",
    "parse_discount",
    "parse_price",
    "published_files",
    "source_url",
    "verify_file",
]

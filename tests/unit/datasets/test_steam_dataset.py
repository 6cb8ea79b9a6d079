"""Specification of the Steam reader, against the real files in the shared data folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from shared.datasets import (
    MalformedLineError,
    SteamBundleItem,
    SteamCatalog,
    SteamGame,
    default_data_dir,
    load_steam,
    parse_discount,
    parse_price,
)

DATA_DIR = default_data_dir()


@pytest.fixture(scope="module")
def catalog() -> SteamCatalog:
    return load_steam(DATA_DIR)


def test_catalog_holds_615_bundles_and_every_game_record_with_an_id(catalog: SteamCatalog) -> None:
    assert len(catalog.bundles) == 615
    # 32,135 records, less 2 without an id, less 1 repeated id (612880).
    assert len(catalog.games) == 32_132


def test_bundle_prices_and_discount_are_numbers(catalog: SteamCatalog) -> None:
    bundle = catalog.bundles["450"]

    assert bundle.name == "Dharker Studio 2015 Complete"
    assert bundle.price == 73.86
    assert bundle.final_price == 66.46
    assert bundle.discount == 0.10
    assert len(bundle.items) == 14
    assert bundle.items[0] == SteamBundleItem("326950", "Sword of Asumi", ("Adventure", "Indie", "RPG"), 8.99)


def test_sixty_five_percent_discount_is_the_fraction_0_65(catalog: SteamCatalog) -> None:
    bundle = catalog.bundles["1478"]

    assert (bundle.name, bundle.price, bundle.final_price, bundle.discount) == (
        "Cosmi Fun Pack",
        71.91,
        25.2,
        0.65,
    )


def test_bundle_items_without_an_app_id_have_no_item_id(catalog: SteamCatalog) -> None:
    item = catalog.bundles["166"].items[1]

    assert item.item_id is None
    assert item.name == "Great White Shark: GTA$1,250,000"
    assert item.discounted_price == 19.99
    assert sum(item.item_id is None for bundle in catalog.bundles.values() for item in bundle.items) == 10


def test_bundle_membership_stats_match_source_md(catalog: SteamCatalog) -> None:
    items = [item for bundle in catalog.bundles.values() for item in bundle.items]
    item_ids = {item.item_id for item in items if item.item_id is not None}

    assert len(items) == 3_525
    assert len(item_ids) == 2_797
    assert len(item_ids & catalog.games.keys()) == 2_334


def test_game_record_becomes_a_typed_game(catalog: SteamCatalog) -> None:
    assert catalog.games["761140"] == SteamGame(
        game_id="761140",
        title="Lost Summoner Kitty",
        genres=("Action", "Casual", "Indie", "Simulation", "Strategy"),
        tags=("Strategy", "Action", "Indie", "Casual", "Simulation"),
        price=4.99,
        developer="Kotoshiro",
        publisher="Kotoshiro",
        release_date="2018-01-04",
    )


def test_free_to_play_game_costs_zero_and_an_install_button_has_no_price(catalog: SteamCatalog) -> None:
    assert catalog.games["643980"].title == "Ironbound"
    assert catalog.games["643980"].price == 0.0
    assert catalog.games["268850"].price is None


@pytest.mark.parametrize(
    ("text", "price"),
    [
        ("$73.86", 73.86),
        ("$1,299.00", 1299.0),
        ("4.99", 4.99),
        (19.99, 19.99),
        (0, 0.0),
        ("Free", 0.0),
        ("Free To Play", 0.0),
        ("Play for Free!", 0.0),
        ("", None),
        (None, None),
        ("Install Now", None),
        ("Starting at $449.00", None),
        (True, None),
    ],
)
def test_price_parsing(text: object, price: float | None) -> None:
    assert parse_price(text) == price


@pytest.mark.parametrize(
    ("text", "discount"), [("65%", 0.65), ("7.5%", 0.075), ("0%", 0.0), ("", None), (None, None), ("-", None)]
)
def test_discount_parsing(text: object, discount: float | None) -> None:
    assert parse_discount(text) == discount


def write_steam(root: Path, bundle_lines: list[str], game_lines: list[str]) -> Path:
    folder = root / "Steam_bundles"
    folder.mkdir()
    for name, lines in (("bundle_data.json.gz", bundle_lines), ("steam_games.json.gz", game_lines)):
        with gzip.open(folder / name, "wt", encoding="utf-8") as gz_file:
            gz_file.writelines(line + "\n" for line in lines)
    return root


def test_records_without_id_are_skipped_and_title_falls_back_to_app_name(tmp_path: Path) -> None:
    data_dir = write_steam(
        tmp_path,
        [],
        [
            "{u'url': u'http://store.steampowered.com/', u'price': 19.99}",
            "{u'id': u'7', u'app_name': u'Seven', u'price': u'Free to Play', u'genres': [u'Indie']}",
        ],
    )

    catalog = load_steam(data_dir)

    assert catalog.games == {"7": SteamGame("7", "Seven", ("Indie",), (), 0.0, None, None, None)}


def test_line_that_is_not_a_dict_literal_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data_dir = write_steam(
        tmp_path,
        ["{'bundle_id': '1', 'bundle_name': 'One', 'items': []}", "{'bundle_id': '2', 'items': [}"],
        [],
    )

    with pytest.raises(MalformedLineError) as raised:
        load_steam(data_dir)

    assert raised.value.path.name == "bundle_data.json.gz"
    assert raised.value.line == 2
    assert raised.value.expected == "a Python dict literal"


def test_field_of_the_wrong_type_is_reported(tmp_path: Path) -> None:
    data_dir = write_steam(tmp_path, [], ["{'id': '3', 'tags': 'Action'}"])

    with pytest.raises(MalformedLineError, match=r"steam_games\.json\.gz:1: expected 'tags' to be a list of text"):
        load_steam(data_dir)

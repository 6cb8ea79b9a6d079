"""Encoders shared by the embedding tests: loading one costs seconds, so each is loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.embedding.device import DevicePlacement
from services.embedding.text_encoder import MiniLMTextEncoder, tiny_random_bert_encoder

CPU_FLOAT32 = DevicePlacement(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def minilm() -> MiniLMTextEncoder:
    """The real all-MiniLM-L6-v2 from the installed package, on the CPU, 128 word pieces."""
    return MiniLMTextEncoder.from_package(CPU_FLOAT32, max_tokens=128)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-random-bert")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> MiniLMTextEncoder:
    """A random 2-layer BERT through the real loading code: fast, meaningless vectors."""
    return tiny_random_bert_encoder(tiny_model_dir, seed=0)

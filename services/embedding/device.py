"""The one place that decides where and in which precision the encoders run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class DevicePlacement:
    """Where an encoder's weights live and the dtype they are stored and run in."""

    device: torch.device
    dtype: torch.dtype

    def describe(self) -> str:
        """``"cuda:0"`` or ``"cpu"``: the device as reported to callers and in metrics."""
        return str(self.device)


def choose_device(choice: DeviceChoice) -> DevicePlacement:
    """Resolves the ``BUNDLEWISE_EMBEDDING_DEVICE`` setting.

    ``auto`` picks the first CUDA device when torch sees one, else the CPU. GPUs run float16 (the
    vectors agree with float32 to about 1e-3 cosine, at half the memory and several times the
    throughput); the CPU runs float32, because float16 matrix products there are slow.

    Raises:
        RuntimeError: ``cuda`` was asked for but torch sees no CUDA device.
    """
    use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return DevicePlacement(torch.device("cpu"), torch.float32)
    if not torch.cuda.is_available():
        raise RuntimeError(
            "BUNDLEWISE_EMBEDDING_DEVICE=cuda but torch sees no CUDA device; "
            "set it to auto or cpu, or run on a GPU node"
        )
    return DevicePlacement(torch.device("cuda", 0), torch.float16)


@dataclass(frozen=True)
class CTranslate2Placement:
    """The same decision in CTranslate2's terms, for the models it runs (Whisper)."""

    device: str
    device_index: int
    compute_type: str


def ctranslate2_placement(placement: DevicePlacement) -> CTranslate2Placement:
    """Where and how CTranslate2 runs a model placed by :func:`choose_device`.

    CUDA runs float16, as the torch encoders do. The CPU runs int8 (weights int8, activations
    quantised per call, CTranslate2's own kernels), not float32: transcription decodes token by
    token, and int8 is what makes it practical on a CPU.
    """
    if placement.device.type == "cuda":
        return CTranslate2Placement("cuda", placement.device.index or 0, "float16")
    return CTranslate2Placement("cpu", 0, "int8")


def use_torch_threads_here(threads: int) -> None:
    """Gives the calling thread ``threads`` torch threads for the rest of its life.

    torch keeps the count per thread but sizes a thread lazily, at its first use of torch, from the
    count the process set last in any thread: a worker that only set its own count would take
    whatever another thread set before the worker's first pass. Touching torch first, then setting,
    keeps the worker's own.
    """
    torch.get_num_threads()
    torch.set_num_threads(threads)

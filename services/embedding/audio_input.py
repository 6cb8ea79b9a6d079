"""Turning untrusted audio bytes into 16 kHz mono samples, or a reason to refuse them."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.signal
import soundfile  # type: ignore[import-untyped]  # no type hints

from shared.errors import InvalidArgument

SAMPLE_RATE = 16_000
"""Whisper's sample rate: every clip is resampled to it."""

# What libsndfile (bundled in soundfile's wheel) decodes that people commonly send; every extra
# container is more attack surface for untrusted bytes. WAVEX and RF64 are WAV variants.
ALLOWED_FORMATS = ("WAV", "WAVEX", "RF64", "FLAC", "OGG", "MP3")
MIN_SECONDS = 0.1
# Below telephone quality there is no speech left to recognise; above studio rates is a waste.
_MIN_SOURCE_RATE = 8_000
_MAX_SOURCE_RATE = 192_000

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AudioLimits:
    """What a single clip may be: encoded bytes, and seconds of sound."""

    max_bytes: int
    max_seconds: float


def decode_audio(data: bytes, limits: AudioLimits, label: str) -> Samples:
    """Decodes one encoded clip (WAV, FLAC, OGG Vorbis or Opus, MP3) into 16 kHz mono float32.

    Sizes are checked before decoding: the byte count first, then the duration in the header, so a
    small file that claims hours of sound is refused without decoding it; the decoded length is
    checked again. Channels are averaged; other sample rates are resampled (polyphase filter).

    Returns:
        float32 samples in [-1, 1], ``(n,)`` with ``n >= MIN_SECONDS * 16000``.

    Raises:
        InvalidArgument: empty, too many bytes, not audio of an allowed format, a sample rate
            outside 8 to 192 kHz, shorter than 0.1 s or longer than ``limits.max_seconds``, or
            corrupt; the message starts with ``label``.
    """
    if not data:
        raise InvalidArgument(f"{label} is empty")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"{label} has {len(data)} bytes; the limit is {limits.max_bytes}")
    accepted = ", ".join(ALLOWED_FORMATS)
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        raise InvalidArgument(f"{label} is not decodable audio (accepted: {accepted})") from None
    if info.format not in ALLOWED_FORMATS:
        raise InvalidArgument(f"{label} is {info.format} audio; accepted: {accepted}")
    rate = int(info.samplerate)
    if not _MIN_SOURCE_RATE <= rate <= _MAX_SOURCE_RATE:
        raise InvalidArgument(f"{label} is sampled at {rate} Hz; accepted: {_MIN_SOURCE_RATE} to {_MAX_SOURCE_RATE}")
    _check_duration(info.frames / rate, limits, label)
    try:
        decoded, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(f"{label} is corrupt: {exc}") from None
    mono = decoded.mean(axis=1, dtype=np.float32)
    # A header may understate the length (MP3 has none to trust): check what was decoded too.
    _check_duration(len(mono) / rate, limits, label)
    if not np.isfinite(mono).all():
        raise InvalidArgument(f"{label} holds samples that are not finite numbers")
    return resample(mono, rate)


def resample(samples: Samples, rate: int) -> Samples:
    """``samples`` at ``rate`` Hz as 16 kHz float32 (unchanged when already 16 kHz)."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(samples, dtype=np.float32)
    common = math.gcd(rate, SAMPLE_RATE)
    converted = scipy.signal.resample_poly(samples, SAMPLE_RATE // common, rate // common)
    return np.ascontiguousarray(converted, dtype=np.float32)


def _check_duration(seconds: float, limits: AudioLimits, label: str) -> None:
    if seconds > limits.max_seconds:
        raise InvalidArgument(f"{label} lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s")
    if seconds < MIN_SECONDS:
        raise InvalidArgument(f"{label} lasts {seconds:.3f} s; at least {MIN_SECONDS:g} s of sound is needed")

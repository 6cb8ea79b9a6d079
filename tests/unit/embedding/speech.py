"""Test clips: speech synthesised by espeak-ng, and audio files written with soundfile."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import numpy.typing as npt
import soundfile  # type: ignore[import-untyped]  # no type hints

ENGLISH = "en-us"
# Debian's Mandarin dictionary (cmn_dict) lacks most characters, which espeak-ng then spells out
# as English; its pinyin voice reads tone-numbered pinyin as Mandarin.
MANDARIN_PINYIN = "cmn-latn-pinyin"


def speak(espeak_ng: str, text: str, voice: str = ENGLISH, words_per_minute: int = 175) -> bytes:
    """``text`` spoken by espeak-ng: a 22,050 Hz mono 16-bit WAV file's bytes."""
    done = subprocess.run(
        [espeak_ng, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout


def tone(seconds: float, rate: int = 16_000, channels: int = 1, hz: float = 440.0) -> npt.NDArray[np.float32]:
    """A sine of ``hz`` at amplitude 0.5, ``(frames, channels)`` float32."""
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(wave[:, np.newaxis], channels, axis=1)


def encode(samples: npt.NDArray[np.float32], rate: int, format: str, subtype: str | None = None) -> bytes:
    """``samples`` written as an audio file of ``format`` (``WAV``, ``FLAC``, ``OGG``, ``MP3``, ...)."""
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=format, subtype=subtype)
    return out.getvalue()

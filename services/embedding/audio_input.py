"""Turning untrusted audio bytes into 16 kHz mono samples, or a reason to refuse them."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import av
import av.audio.stream
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
# What browsers' MediaRecorder sends (Chrome and Firefox: WebM/Opus; Safari: MP4/AAC), decoded with
# the FFmpeg bundled in PyAV's wheel. Each is recognised by its first bytes and opened with that one
# demuxer, never by FFmpeg's probing of all of them: some (HLS, concat) would open further URLs.
_MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"  # the EBML header of WebM and Matroska
_MP4_BOX = b"ftyp"  # the first box of ISO base media files (MP4, M4A, MOV), after its 4-byte size
ALLOWED_CONTAINERS = ("WEBM", "M4A")
ALLOWED_CODECS = ("opus", "vorbis", "aac", "mp3")
ACCEPTED_FORMATS = ALLOWED_FORMATS + ALLOWED_CONTAINERS
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
    """Decodes one encoded clip into 16 kHz mono float32.

    Accepted: WAV, FLAC, OGG Vorbis or Opus, MP3 (libsndfile), and what browsers record: WebM or
    Matroska, and MP4/M4A, holding Opus, Vorbis, AAC or MP3 (FFmpeg). Sizes are checked before
    decoding: the byte count first, then the duration in the header, so a small file that claims hours
    of sound is refused without decoding it; where a WebM header states no duration, decoding stops
    as soon as the limit is passed; the decoded length is checked again. Channels are averaged; other
    sample rates are resampled (polyphase filter).

    Returns:
        float32 samples in [-1, 1], ``(n,)`` with ``n >= MIN_SECONDS * 16000``.

    Raises:
        InvalidArgument: empty, too many bytes, not audio of an allowed format (or codec), a sample
            rate outside 8 to 192 kHz, shorter than 0.1 s or longer than ``limits.max_seconds``, or
            corrupt; the message starts with ``label``.
    """
    if not data:
        raise InvalidArgument(f"{label} is empty")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"{label} has {len(data)} bytes; the limit is {limits.max_bytes}")
    accepted = ", ".join(ACCEPTED_FORMATS)
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        demuxer = _browser_demuxer(data)
        if demuxer is None:
            raise InvalidArgument(f"{label} is not decodable audio (accepted: {accepted})") from None
        return _decode_with_ffmpeg(data, demuxer, limits, label)
    if info.format not in ALLOWED_FORMATS:
        raise InvalidArgument(f"{label} is {info.format} audio; accepted: {accepted}")
    rate = int(info.samplerate)
    _check_rate(rate, label)
    _check_duration(info.frames / rate, limits, label)
    try:
        decoded, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(f"{label} is corrupt: {exc}") from None
    mono = decoded.mean(axis=1, dtype=np.float32)
    # A header may understate the length (MP3 has none to trust): check what was decoded too.
    _check_duration(len(mono) / rate, limits, label)
    return _finish(mono, rate, label)


def resample(samples: Samples, rate: int) -> Samples:
    """``samples`` at ``rate`` Hz as 16 kHz float32 (unchanged when already 16 kHz)."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(samples, dtype=np.float32)
    common = math.gcd(rate, SAMPLE_RATE)
    converted = scipy.signal.resample_poly(samples, SAMPLE_RATE // common, rate // common)
    return np.ascontiguousarray(converted, dtype=np.float32)


def _browser_demuxer(data: bytes) -> str | None:
    """The FFmpeg demuxer for a WebM or MP4 clip, told by its first bytes; None for anything else."""
    if data.startswith(_MATROSKA_MAGIC):
        return "matroska"
    if data[4:8] == _MP4_BOX:
        return "mp4"
    return None


def _decode_with_ffmpeg(data: bytes, demuxer: str, limits: AudioLimits, label: str) -> Samples:
    try:
        # PyAV keeps FFmpeg's log off unless someone turns it on: bad input makes no noise on stderr.
        # Undecodable metadata (tags) must not refuse a clip whose sound is fine.
        with av.open(io.BytesIO(data), "r", format=demuxer, metadata_errors="replace") as container:
            if not container.streams.audio:
                raise InvalidArgument(f"{label} holds no audio stream")
            stream = container.streams.audio[0]
            context: av.AudioCodecContext | None = stream.codec_context  # None: no decoder for its codec
            codec = "unknown" if context is None else context.codec.canonical_name
            if context is None or codec not in ALLOWED_CODECS:
                accepted = ", ".join(ALLOWED_CODECS)
                raise InvalidArgument(f"{label} holds {codec} audio; accepted in WEBM and M4A: {accepted}")
            rate = context.sample_rate
            _check_rate(rate, label)
            stated = _stated_seconds(container, stream)
            if stated is not None:
                _check_duration(stated, limits, label)
            mono = _decode_mono(container, stream, rate, limits, label)
    except av.FFmpegError as exc:
        raise InvalidArgument(f"{label} is corrupt: {exc.strerror or exc}") from None
    except ValueError as exc:  # PyAV's own, e.g. the layout or sample rate changing midway
        raise InvalidArgument(f"{label} is corrupt: {exc}") from None
    _check_duration(len(mono) / rate, limits, label)
    return _finish(mono, rate, label)


def _stated_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """The duration the header states: the stream's, else the container's; None when neither does."""
    # Zero means unknown, not silence (the movie header of a fragmented MP4 says 0, for one).
    if stream.duration and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _decode_mono(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    rate: int,
    limits: AudioLimits,
    label: str,
) -> Samples:
    """The stream's channels averaged, at ``rate``; refused as soon as it passes ``limits.max_seconds``."""
    # Planar float whatever the decoder gives, averaged frame by frame so only one channel is held.
    converter = av.AudioResampler(format="fltp", rate=rate)
    most = math.floor(limits.max_seconds * rate)
    chunks: list[Samples] = []
    decoded = 0
    frames: Iterable[av.AudioFrame | None] = itertools.chain(container.decode(stream), [None])  # None: flush
    for frame in frames:
        for converted in converter.resample(frame):
            chunks.append(converted.to_ndarray().mean(axis=0, dtype=np.float32))
            decoded += len(chunks[-1])
            # A header may state no duration (MediaRecorder's WebM) or too little: never decode on
            # past the limit, however long the stream is.
            if decoded > most:
                raise InvalidArgument(f"{label} lasts more than the limit of {limits.max_seconds:g} s")
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _finish(mono: Samples, rate: int, label: str) -> Samples:
    if not np.isfinite(mono).all():
        raise InvalidArgument(f"{label} holds samples that are not finite numbers")
    return resample(mono, rate)


def _check_rate(rate: int, label: str) -> None:
    if not _MIN_SOURCE_RATE <= rate <= _MAX_SOURCE_RATE:
        raise InvalidArgument(f"{label} is sampled at {rate} Hz; accepted: {_MIN_SOURCE_RATE} to {_MAX_SOURCE_RATE}")


def _check_duration(seconds: float, limits: AudioLimits, label: str) -> None:
    if seconds > limits.max_seconds:
        raise InvalidArgument(f"{label} lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s")
    if seconds < MIN_SECONDS:
        raise InvalidArgument(f"{label} lasts {seconds:.3f} s; at least {MIN_SECONDS:g} s of sound is needed")

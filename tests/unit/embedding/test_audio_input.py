"""Untrusted audio bytes -> 16 kHz mono samples, or INVALID_ARGUMENT with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from services.embedding.audio_input import SAMPLE_RATE, AudioLimits, decode_audio
from shared.errors import InvalidArgument
from tests.unit.embedding.speech import encode, tone

ACCEPTED = "WAV, WAVEX, RF64, FLAC, OGG, MP3"
LIMITS = AudioLimits(max_bytes=2 * 1024 * 1024, max_seconds=30.0)


def test_a_16_khz_mono_wav_decodes_to_its_own_samples() -> None:
    samples = tone(1.5)

    decoded = decode_audio(encode(samples, SAMPLE_RATE, "WAV", "FLOAT"), LIMITS, "clip")

    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, samples[:, 0])


def test_44_1_khz_stereo_is_averaged_and_resampled_to_16_khz() -> None:
    left = tone(2.0, rate=44_100, hz=440.0)[:, 0]
    stereo = np.stack([left, np.zeros_like(left)], axis=1)

    decoded = decode_audio(encode(stereo, 44_100, "WAV", "FLOAT"), LIMITS, "clip")

    assert len(decoded) == 2 * SAMPLE_RATE
    expected = tone(2.0, rate=SAMPLE_RATE, hz=440.0)[:, 0] / 2
    # The polyphase filter's edges ring; the middle is the same sine at half the amplitude.
    np.testing.assert_allclose(decoded[1000:-1000], expected[1000:-1000], atol=5e-3)


@pytest.mark.parametrize(
    ("file_format", "subtype", "rate"),
    [("FLAC", "PCM_16", 16_000), ("OGG", "VORBIS", 22_050), ("OGG", "OPUS", 48_000), ("MP3", "MPEG_LAYER_III", 44_100)],
    ids=["flac", "ogg-vorbis", "ogg-opus", "mp3"],
)
def test_compressed_formats_decode_to_about_their_duration_at_16_khz(file_format: str, subtype: str, rate: int) -> None:
    decoded = decode_audio(encode(tone(1.0, rate=rate), rate, file_format, subtype), LIMITS, "clip")

    # Lossy codecs pad a few milliseconds at the edges.
    assert abs(len(decoded) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE
    assert 0.3 < float(np.abs(decoded[4000:12000]).max()) < 0.7


def test_a_clip_of_exactly_the_limit_is_accepted() -> None:
    limits = AudioLimits(max_bytes=LIMITS.max_bytes, max_seconds=2.0)

    assert len(decode_audio(encode(tone(2.0), SAMPLE_RATE, "WAV"), limits, "clip")) == 2 * SAMPLE_RATE


@pytest.mark.parametrize(
    ("data", "details"),
    [
        (b"", "clips[3] is empty"),
        (
            b"this is not audio at all" * 10,
            "clips[3] is not decodable audio (accepted: WAV, WAVEX, RF64, FLAC, OGG, MP3)",
        ),
        (encode(tone(31.0, rate=8_000), 8_000, "WAV"), "clips[3] lasts 31.0 s; the limit is 30 s"),
        (encode(tone(0.05), SAMPLE_RATE, "WAV"), "clips[3] lasts 0.050 s; at least 0.1 s of sound is needed"),
        (encode(tone(1.0, rate=4_000), 4_000, "WAV"), "clips[3] is sampled at 4000 Hz; accepted: 8000 to 192000"),
        (encode(tone(1.0), SAMPLE_RATE, "AIFF"), f"clips[3] is AIFF audio; accepted: {ACCEPTED}"),
    ],
    ids=["empty", "not-audio", "too-long", "too-short", "sample-rate-too-low", "other-format"],
)
def test_bad_clips_are_refused_with_the_reason(data: bytes, details: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, LIMITS, "clips[3]")

    assert str(refused.value) == details


def test_too_many_bytes_are_refused_before_decoding() -> None:
    data = encode(tone(1.0), SAMPLE_RATE, "WAV", "FLOAT")

    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, AudioLimits(max_bytes=len(data) - 1, max_seconds=30.0), "audio")

    assert str(refused.value) == f"audio has {len(data)} bytes; the limit is {len(data) - 1}"


def test_a_flac_cut_in_the_middle_is_refused_as_corrupt() -> None:
    data = encode(tone(2.0), SAMPLE_RATE, "FLAC")

    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data[: len(data) // 2], LIMITS, "audio")

    assert str(refused.value) == "audio is corrupt: Error : flac decoder lost sync."

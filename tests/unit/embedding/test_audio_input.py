"""Untrusted audio bytes -> 16 kHz mono samples, or INVALID_ARGUMENT with the reason."""

from __future__ import annotations

import io

import av
import av.audio.stream
import numpy as np
import numpy.typing as npt
import pytest

from services.embedding.audio_input import SAMPLE_RATE, AudioLimits, decode_audio
from shared.errors import InvalidArgument
from tests.unit.embedding.speech import encode, tone

ACCEPTED = "WAV, WAVEX, RF64, FLAC, OGG, MP3, WEBM, M4A"
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
            "clips[3] is not decodable audio (accepted: WAV, WAVEX, RF64, FLAC, OGG, MP3, WEBM, M4A)",
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


# What browsers' MediaRecorder sends, written here by FFmpeg's own muxers and encoders (PyAV).
# MediaRecorder's WebM is written as it records, with no duration in its header ("live").
WITHOUT_DURATION = {"live": "1"}
# Safari's MP4 is fragmented: the movie header comes first and states no duration.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
CODECS = "opus, vorbis, aac, mp3"


def record(
    samples: npt.NDArray[np.float32],
    rate: int,
    container: str,
    codec: str,
    options: dict[str, str] | None = None,
    title: str | None = None,
) -> bytes:
    """``samples`` ``(frames, channels)`` encoded with ``codec`` into ``container`` (FFmpeg's names)."""
    out = io.BytesIO()
    layout = "stereo" if samples.shape[1] == 2 else "mono"
    with av.open(out, "w", format=container, options=options or {}) as output:
        if title is not None:
            output.metadata["title"] = title
        stream = output.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout=layout)
        frame.sample_rate = rate
        output.mux([*stream.encode(frame), *stream.encode(None)])
    return out.getvalue()


def video_only_webm() -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as output:
        stream = output.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
        output.mux([*stream.encode(black), *stream.encode(None)])
    return out.getvalue()


def left_tone(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    """440 Hz at amplitude 0.5 on the left channel, silence on the right."""
    left = tone(seconds, rate=rate, hz=440.0)[:, 0]
    return np.stack([left, np.zeros_like(left)], axis=1)


def dominant_hz(samples: npt.NDArray[np.float32]) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), d=1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("container", "codec", "rate", "options"),
    [
        ("webm", "libopus", 48_000, None),
        ("webm", "libopus", 48_000, WITHOUT_DURATION),
        ("mp4", "aac", 44_100, None),
        ("mp4", "aac", 44_100, FRAGMENTED),
        ("mp4", "libmp3lame", 44_100, None),
    ],
    ids=["webm-opus", "webm-opus-without-duration", "m4a-aac", "fragmented-m4a-aac", "m4a-mp3"],
)
def test_browser_recordings_decode_to_16_khz_mono_with_their_channels_averaged(
    container: str, codec: str, rate: int, options: dict[str, str] | None
) -> None:
    decoded = decode_audio(record(left_tone(1.5, rate), rate, container, codec, options), LIMITS, "clip")

    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    # Lossy codecs pad a few milliseconds at the edges.
    assert abs(len(decoded) - 1.5 * SAMPLE_RATE) < 0.06 * SAMPLE_RATE
    middle = decoded[4000:20000]
    assert abs(dominant_hz(middle) - 440.0) < 1.0
    # The tone at 0.5 on one channel and silence on the other average to 0.25.
    assert 0.22 < float(np.abs(middle).max()) < 0.28


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [("webm", "libopus", 48_000), ("mp4", "aac", 44_100)],
    ids=["webm-opus", "m4a-aac"],
)
def test_a_browser_recording_whose_header_states_more_than_the_limit_is_refused_before_decoding(
    container: str, codec: str, rate: int
) -> None:
    data = record(tone(1.5, rate=rate), rate, container, codec)

    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, AudioLimits(max_bytes=LIMITS.max_bytes, max_seconds=1.0), "clip")

    # The seconds come from the header: decoding would have stopped at "more than the limit".
    assert str(refused.value) == "clip lasts 1.5 s; the limit is 1 s"


def test_a_webm_without_a_duration_stops_decoding_as_soon_as_it_passes_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = record(tone(3.0, rate=48_000), 48_000, "webm", "libopus", WITHOUT_DURATION)
    with av.open(io.BytesIO(data), "r") as container:
        assert container.duration is None
    decoded_frames: list[int] = []
    resampler = av.AudioResampler

    class CountingResampler:
        """What the decoder passes on to PyAV's resampler, counted."""

        def __init__(self, format: str, rate: int) -> None:
            self._resampler = resampler(format=format, rate=rate)

        def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
            decoded_frames.append(0 if frame is None else frame.samples)
            return self._resampler.resample(frame)

    monkeypatch.setattr(av, "AudioResampler", CountingResampler)

    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, AudioLimits(max_bytes=LIMITS.max_bytes, max_seconds=1.0), "clip")

    assert str(refused.value) == "clip lasts more than the limit of 1 s"
    # Opus frames are 20 ms: one past the limit, not the 3 s of the whole stream.
    assert 1.0 < sum(decoded_frames) / 48_000 <= 1.02


@pytest.mark.parametrize(
    ("container", "codec", "rate", "options"),
    [("webm", "libopus", 48_000, None), ("webm", "libopus", 48_000, WITHOUT_DURATION), ("mp4", "aac", 44_100, None)],
    ids=["webm-opus", "webm-opus-without-duration", "m4a-aac"],
)
def test_a_browser_recording_shorter_than_a_tenth_of_a_second_is_refused(
    container: str, codec: str, rate: int, options: dict[str, str] | None
) -> None:
    data = record(tone(0.05, rate=rate), rate, container, codec, options)

    # 50 ms of sound, and the few more milliseconds the codec pads it with.
    with pytest.raises(InvalidArgument, match=r"^clip lasts 0\.0[5-9]\d s; at least 0\.1 s of sound is needed$"):
        decode_audio(data, LIMITS, "clip")


@pytest.mark.parametrize(
    ("data", "details"),
    [
        (video_only_webm(), "clip holds no audio stream"),
        (
            record(tone(1.0, rate=44_100), 44_100, "matroska", "pcm_s16le"),
            f"clip holds pcm_s16le audio; accepted in WEBM and M4A: {CODECS}",
        ),
        (
            record(tone(1.0, rate=44_100), 44_100, "mp4", "alac"),
            f"clip holds alac audio; accepted in WEBM and M4A: {CODECS}",
        ),
        (
            record(tone(1.0, rate=44_100), 44_100, "mpegts", "aac"),
            f"clip is not decodable audio (accepted: {ACCEPTED})",
        ),
    ],
    ids=["video-only-webm", "pcm-in-matroska", "alac-in-m4a", "aac-in-mpeg-ts"],
)
def test_other_codecs_and_containers_ffmpeg_knows_are_refused_with_the_reason(data: bytes, details: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, LIMITS, "clip")

    assert str(refused.value) == details


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [("webm", "libopus", 48_000), ("mp4", "aac", 44_100)],
    ids=["webm-opus", "m4a-aac"],
)
def test_a_browser_recording_whose_tags_are_not_utf_8_still_decodes(container: str, codec: str, rate: int) -> None:
    data = record(tone(1.0, rate=rate), rate, container, codec, title="TITLE")
    assert data.count(b"TITLE") == 1
    data = data.replace(b"TITLE", b"\xff\xfe\xc3(!")

    decoded = decode_audio(data, LIMITS, "clip")

    assert abs(len(decoded) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE


M4A = record(tone(1.5, rate=44_100), 44_100, "mp4", "aac")
WEBM = record(tone(1.5, rate=48_000), 48_000, "webm", "libopus")


@pytest.mark.parametrize(
    ("data", "details"),
    [
        # Its index (the "moov" box) comes last, so half of it has no index.
        (M4A[: len(M4A) // 2], "clip is corrupt: Invalid data found when processing input"),
        (WEBM[:300], "clip is corrupt: Input/output error"),
        (WEBM[:4] + b"not a matroska header" * 10, "clip is corrupt: Invalid data found when processing input"),
    ],
    ids=["m4a-cut-in-half", "webm-cut-after-its-header", "webm-magic-then-garbage"],
)
def test_corrupt_browser_recordings_are_refused_without_noise_on_stderr(
    data: bytes, details: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_audio(data, LIMITS, "clip")

    assert str(refused.value) == details
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("seed", range(40))
def test_browser_recordings_with_damaged_bytes_decode_or_are_refused_never_crash(seed: int) -> None:
    rng = np.random.default_rng(seed)
    damaged = bytearray(WEBM if seed % 2 else M4A)
    for at in rng.integers(0, len(damaged), size=20):
        damaged[at] = int(rng.integers(0, 256))

    try:
        decoded = decode_audio(bytes(damaged), LIMITS, "clip")
    except InvalidArgument:
        return  # refusing is a right answer; any other exception fails the test
    assert decoded.dtype == np.float32
    assert np.isfinite(decoded).all()

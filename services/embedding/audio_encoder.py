"""Audio encoders: the port the service depends on and the Whisper-base adapter (CTranslate2).

Whisper-base serves two purposes. Its encoder, mean-pooled over the clip, gives an audio vector
(512-d, its own space: it shares none with the text or image vectors). Its decoder transcribes
speech, so a spoken query can be embedded as text (:mod:`services.embedding.spoken_query`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from services.embedding.audio_input import SAMPLE_RATE, Samples
from services.embedding.device import CTranslate2Placement
from services.embedding.model_cache import WHISPER_LICENSE, WHISPER_NAME, file_sha256, is_prepared, whisper_dir
from services.embedding.text_encoder import import_transformers_offline

HOP_SAMPLES = 160
"""Samples per log-mel frame (10 ms at 16 kHz); the encoder halves the frames (one position per 20 ms)."""
WINDOW_SECONDS = 30
"""Whisper's fixed input window; the decoder was trained on it, so transcription always pads to it."""
BUCKET_SECONDS = 1
"""Clips are padded to whole seconds for the pooled vector: a clip's vector then never depends on
what else shares its batch, and clips of one bucket share forward passes."""
_WINDOW_FRAMES = WINDOW_SECONDS * SAMPLE_RATE // HOP_SAMPLES
# Above it, the clip is taken as holding no speech. Measured: silence 0.93, white noise 0.88,
# espeak-ng speech 0.28 (English) and 0.37 (Mandarin). Whisper's own rule (above 0.6 and a mean
# log-probability below -1) lets silence through here: its "you" scores -0.99.
NO_SPEECH_THRESHOLD = 0.8


@dataclass(frozen=True)
class AudioFeatures:
    """A clip as the encoder takes it: float32 log-mel ``(n_mels, frames)`` and the frames of sound in it."""

    mel: npt.NDArray[np.float32]
    sound_frames: int

    @property
    def padded_frames(self) -> int:
        """Frames including the padding; clips batch together only when these are equal."""
        return int(self.mel.shape[1])


@dataclass(frozen=True)
class Transcript:
    """What was said in a clip, in which language, and how sure the model was."""

    text: str
    language: str
    language_probability: float
    no_speech_probability: float
    # Mean log-probability of the transcript's tokens.
    average_logprob: float

    @property
    def is_speech(self) -> bool:
        """False when Whisper's own no-speech rule says the clip holds no speech (silence, noise)."""
        return bool(self.text.strip()) and self.no_speech_probability <= NO_SPEECH_THRESHOLD


class AudioEncoder(Protocol):
    """Turns audio clips into comparable vectors.

    :meth:`features` runs on the caller's thread (many calls compute log-mels in parallel);
    :meth:`encode` runs the model on a batch of features of one padded length.
    """

    @property
    def name(self) -> str:
        """Stable model name, e.g. ``whisper-base``; what callers ask for."""
        ...

    @property
    def version(self) -> str:
        """``<name>@<weights fingerprint>[+int8]``; changes exactly when the weights or precision do."""
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

    def features(self, samples: Samples) -> AudioFeatures:
        """The log-mel of 16 kHz mono ``samples``, padded with silence to whole seconds."""
        ...

    def encode(self, features: Sequence[AudioFeatures]) -> npt.NDArray[np.float32]:
        """Embeds clips of one padded length.

        Returns:
            float32 ``(len(features), dim)``, row ``i`` the L2-normalised mean of the encoder's
            states over the positions that hold ``features[i]``'s sound (not its padding); ``(0,
            dim)`` for none.

        Raises:
            ValueError: the clips differ in padded length.
        """
        ...


class WhisperBase:
    """Whisper-base in CTranslate2 format: pooled encoder vectors and transcription.

    Vectors: the log-mel of the clip padded to whole seconds (not to Whisper's 30 s window, which
    costs about 15 to 50 times more), the encoder over it, the states averaged over the positions
    of the clip's sound, L2-normalised. Transcripts: the clip padded to the 30 s window, as the
    decoder was trained; the language is detected among ``languages`` unless given.
    """

    def __init__(
        self,
        model_dir: Path,
        placement: CTranslate2Placement,
        threads: int = 0,
        languages: Sequence[str] = ("en", "zh"),
        beam_size: int = 5,
        max_transcript_tokens: int = 128,
    ) -> None:
        """Loads a prepared ``whisper-base`` folder (``model.bin``, ``tokenizer.json``, ...).

        ``threads``: CTranslate2's threads per call (0: its default). ``languages``: the ones
        detection chooses from (ISO 639-1 codes Whisper knows).

        Raises:
            FileNotFoundError: the folder has not been prepared; the message says to run ``make models``.
            ValueError: a language Whisper does not know.
        """
        if not is_prepared(model_dir):
            raise FileNotFoundError(
                f"{model_dir} holds no prepared Whisper-base; run `make models` (scripts/prepare_models.py)"
            )
        # Only the audio modality needs them; ctranslate2 ships no type hints, tokenizers is light.
        import ctranslate2  # type: ignore[import-untyped]  # noqa: PLC0415
        import tokenizers  # noqa: PLC0415

        self._ctranslate2: Any = ctranslate2
        self._model: Any = ctranslate2.models.Whisper(
            str(model_dir),
            device=placement.device,
            device_index=placement.device_index,
            compute_type=placement.compute_type,
            intra_threads=threads,
        )
        self._tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        for language in languages:
            if self._tokenizer.token_to_id(f"<|{language}|>") is None:
                raise ValueError(f"Whisper knows no language {language!r}")
        self._languages = tuple(languages)
        self._beam_size = beam_size
        self._max_transcript_tokens = max_transcript_tokens
        n_mels = int(getattr(self._model, "n_mels", 80))
        self._mel = import_transformers_offline().WhisperFeatureExtractor(feature_size=n_mels)
        self._placement = placement
        precision = "+int8" if placement.compute_type == "int8" else ""
        self._version = f"{WHISPER_NAME}@{file_sha256(model_dir / 'model.bin')[:12]}{precision}"
        silence = self.features(np.zeros(SAMPLE_RATE, dtype=np.float32))
        self._dim = int(self._encoder_states([silence]).shape[2])

    @classmethod
    def from_cache(cls, cache_root: Path, placement: CTranslate2Placement, **options: Any) -> WhisperBase:
        """The joined Whisper-base under ``cache_root`` (``BUNDLEWISE_MODEL_CACHE``); see ``__init__``."""
        return cls(whisper_dir(cache_root), placement, **options)

    @property
    def name(self) -> str:
        return WHISPER_NAME

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def license(self) -> str:
        return WHISPER_LICENSE

    @property
    def device(self) -> str:
        if self._placement.device == "cuda":
            return f"cuda:{self._placement.device_index}"
        return "cpu"

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages detection chooses from."""
        return self._languages

    def features(self, samples: Samples) -> AudioFeatures:
        """See :meth:`AudioEncoder.features`; at most 30 s of ``samples`` are used."""
        bucket = BUCKET_SECONDS * SAMPLE_RATE
        padded = min(WINDOW_SECONDS * SAMPLE_RATE, max(bucket, math.ceil(len(samples) / bucket) * bucket))
        sound_frames = max(1, min(len(samples), padded) // HOP_SAMPLES)
        return AudioFeatures(self._log_mel(samples, padded), sound_frames)

    def window_features(self, samples: Samples) -> npt.NDArray[np.float32]:
        """The log-mel of ``samples`` padded (or cut) to the 30 s window: what :meth:`transcribe` takes."""
        return self._log_mel(samples, WINDOW_SECONDS * SAMPLE_RATE)

    def encode(self, features: Sequence[AudioFeatures]) -> npt.NDArray[np.float32]:
        """See :meth:`AudioEncoder.encode`."""
        if not features:
            return np.empty((0, self._dim), dtype=np.float32)
        if len({item.padded_frames for item in features}) > 1:
            raise ValueError("clips of one batch must have the same padded length")
        states = self._encoder_states(features)
        positions = states.shape[1]
        pooled = np.empty((len(features), self._dim), dtype=np.float32)
        for row, item in enumerate(features):
            # The convolution stem halves the frames: position p covers frames 2p and 2p + 1.
            used = min(positions, math.ceil(item.sound_frames / 2))
            pooled[row] = states[row, :used].mean(axis=0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def window_states(self, samples: Samples) -> npt.NDArray[np.float32]:
        """The encoder's float32 ``(1500, dim)`` states over ``samples`` padded to the 30 s window.

        What transcription sees, unpooled; for checking the cut clips' vectors against it.
        """
        window = self.window_features(samples)
        states: npt.NDArray[np.float32] = self._encoder_states([AudioFeatures(window, window.shape[1])])[0]
        return states

    def transcribe(self, window: npt.NDArray[np.float32], language: str | None = None) -> Transcript:
        """What is said in one clip, from :meth:`window_features`; see :meth:`transcribe_batch`."""
        [transcript] = self.transcribe_batch([window], [language])
        return transcript

    def transcribe_batch(
        self, windows: Sequence[npt.NDArray[np.float32]], languages: Sequence[str | None]
    ) -> list[Transcript]:
        """What is said in each clip (from :meth:`window_features`), in one encoder pass and one decode.

        ``languages[i]`` None: the most likely of :attr:`languages` by Whisper's language detection.
        Decoding is beam search (no timestamps), at most ``max_transcript_tokens`` tokens. Blocks
        for the encoder and the decoder (about 0.6 to 1.6 s per clip on the CPU, int8).

        Raises:
            ValueError: a language is not one of :attr:`languages`, or the two lengths differ.
        """
        if len(windows) != len(languages):
            raise ValueError(f"{len(windows)} windows but {len(languages)} languages")
        for language in languages:
            if language is not None and language not in self._languages:
                raise ValueError(f"language {language!r} is not one of {', '.join(self._languages)}")
        if not windows:
            return []
        batch = self._ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(list(windows))))
        # Encode once; detection and decoding both take the encoder's output.
        encoded = self._model.encode(batch, to_cpu=False)
        chosen: list[tuple[str, float]] = []
        detected = self._model.detect_language(encoded) if None in languages else [None] * len(windows)
        for language, candidates in zip(languages, detected, strict=True):
            if language is not None:
                chosen.append((language, 1.0))
                continue
            scores = dict(candidates)
            probabilities = {code: float(scores.get(f"<|{code}|>", 0.0)) for code in self._languages}
            best = max(probabilities, key=lambda code: probabilities[code])
            chosen.append((best, probabilities[best]))
        prompts = [
            ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"] for language, _ in chosen
        ]
        results = self._model.generate(
            encoded,
            prompts,
            beam_size=self._beam_size,
            max_length=self._max_transcript_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )
        return [
            Transcript(
                text=self._tokenizer.decode(result.sequences_ids[0], skip_special_tokens=True).strip(),
                language=language,
                language_probability=probability,
                no_speech_probability=float(result.no_speech_prob),
                average_logprob=float(result.scores[0]),
            )
            for result, (language, probability) in zip(results, chosen, strict=True)
        ]

    def _log_mel(self, samples: Samples, length: int) -> npt.NDArray[np.float32]:
        clip = np.zeros(length, dtype=np.float32)
        used = min(len(samples), length)
        clip[:used] = samples[:used]
        mel = self._mel(clip, sampling_rate=SAMPLE_RATE, padding=False, return_tensors="np").input_features[0]
        result: npt.NDArray[np.float32] = np.ascontiguousarray(mel, dtype=np.float32)
        return result

    def _encoder_states(self, features: Sequence[AudioFeatures]) -> npt.NDArray[np.float32]:
        stacked = np.ascontiguousarray(np.stack([item.mel for item in features]))
        output = self._model.encode(self._ctranslate2.StorageView.from_array(stacked), to_cpu=True)
        states: npt.NDArray[np.float32] = np.asarray(output).astype(np.float32, copy=False)
        return states

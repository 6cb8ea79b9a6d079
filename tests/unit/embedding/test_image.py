"""Images: EfficientNet-Lite0 on real photos, and the refusal of bad image input."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.embedding.image_encoder import (
    EfficientNetLiteImageEncoder,
    _PooledFeatures,
    packaged_efficientnet_lite0_weights,
)
from services.embedding.image_input import ImageLimits, decode_image, read_image_file
from shared.errors import InvalidArgument, NotFound

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=2_000_000)
# ImageNet-1k classes a photo of a Chinese palace by a lake plausibly is.
CHINESE_BUILDING_CLASSES = {
    442: "bell cote",
    483: "castle",
    497: "church",
    663: "monastery",
    698: "palace",
    832: "stupa",
}
DAISY = 985


def sample_photos() -> dict[str, Image.Image]:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), 640 x 427."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn ships the sample photos")
    samples = datasets.load_sample_images()
    return {
        Path(name).stem: Image.fromarray(pixels) for name, pixels in zip(samples.filenames, samples.images, strict=True)
    }


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` RGB pixels; its data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(64)))


def test_the_sample_photos_classify_plausibly(efficientnet: EfficientNetLiteImageEncoder) -> None:
    photos = sample_photos()

    probabilities = efficientnet.classify([efficientnet.preprocess(photos[name]) for name in ("china", "flower")])

    china_top5, flower_top5 = (np.argsort(row)[::-1][:5] for row in probabilities)
    assert set(china_top5.tolist()) & set(CHINESE_BUILDING_CLASSES), china_top5.tolist()
    assert flower_top5[0] == DAISY, flower_top5.tolist()


def test_image_vectors_are_1280_wide_unit_vectors_robust_to_recompression(
    efficientnet: EfficientNetLiteImageEncoder,
) -> None:
    photos = sample_photos()
    recompressed = decode_image(jpeg_bytes(photos["china"], quality=40), LIMITS, "image")

    china, flower, china_again = efficientnet.encode(
        [efficientnet.preprocess(image) for image in (photos["china"], photos["flower"], recompressed)]
    )

    assert china.shape == (1280,)
    assert china.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm([china, flower, china_again], axis=1), np.ones(3), atol=1e-5)
    assert float(china @ china_again) > 0.9
    assert float(china @ flower) < 0.5


def test_the_frozen_cpu_graph_gives_the_eager_models_vectors_at_any_batch_size(
    efficientnet: EfficientNetLiteImageEncoder,
) -> None:
    photos = sample_photos()
    pixels = [efficientnet.preprocess(photos[name].rotate(angle)) for name in photos for angle in (0, 5, 10)]
    eager = _PooledFeatures(efficientnet._model).eval()

    for batch in (pixels[:1], pixels[:5], pixels):
        with torch.inference_mode():
            expected = torch.nn.functional.normalize(eager(torch.stack(batch)), dim=1).numpy()
        vectors = efficientnet.encode(batch)

        assert isinstance(efficientnet._features, torch.jit.ScriptModule)
        np.testing.assert_allclose(vectors, expected, atol=1e-4)


def test_forward_passes_from_several_threads_at_once_give_each_its_own_vectors(
    efficientnet: EfficientNetLiteImageEncoder,
) -> None:
    photos = sample_photos()
    batches = [[efficientnet.preprocess(photos[name].rotate(angle))] * 2 for name in photos for angle in (0, 7)]
    alone = [efficientnet.encode(batch) for batch in batches]

    with ThreadPoolExecutor(len(batches)) as pool:
        together = list(pool.map(efficientnet.encode, batches))

    for expected, vectors in zip(alone, together, strict=True):
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)


def test_preprocessing_centre_crops_to_224_and_scales_to_minus_one_one(
    efficientnet: EfficientNetLiteImageEncoder,
) -> None:
    white_with_black_border = Image.new("RGB", (600, 300), (255, 255, 255))
    white_with_black_border.paste((0, 0, 0), (0, 0, 600, 10))

    pixels = efficientnet.preprocess(white_with_black_border)

    assert tuple(pixels.shape) == (3, 224, 224)
    assert float(pixels[:, 112, 112].min()) == pytest.approx(1.0)
    assert float(efficientnet.preprocess(Image.new("RGB", (300, 300), (0, 0, 0))).max()) == pytest.approx(-1.0)


def test_the_image_encoder_names_its_weights(efficientnet: EfficientNetLiteImageEncoder) -> None:
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256(packaged_efficientnet_lite0_weights().read_bytes()).hexdigest()

    assert (efficientnet.name, efficientnet.dim, efficientnet.license, efficientnet.device) == (
        "efficientnet-lite0",
        1280,
        "Apache-2.0",
        "cpu",
    )
    assert efficientnet.version == f"efficientnet-lite0@{digest[:12]}"
    assert efficientnet.encode([]).shape == (0, 1280)


def test_transparent_pixels_become_white() -> None:
    transparent = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    out = io.BytesIO()
    transparent.save(out, format="PNG")

    decoded = decode_image(out.getvalue(), LIMITS, "image")

    assert decoded.mode == "RGB"
    assert decoded.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "images[3] is empty"),
        (
            b"GIF89a this is not really an image",
            "images[3] is not a decodable image (accepted: JPEG, PNG, WEBP, GIF, BMP)",
        ),
        (b"%PDF-1.7 a document", "images[3] is not a decodable image (accepted: JPEG, PNG, WEBP, GIF, BMP)"),
        (b"\xff" * 1_000_001, "images[3] has 1000001 bytes; the limit is 1000000"),
        (png_claiming(2000, 1001), "images[3] is 2000x1001 pixels; the limit is 2000000 pixels"),
        (png_claiming(100_000, 100_000), "images[3] has more than 2000000 pixels, the limit"),
    ],
    ids=["empty", "garbage", "pdf", "too-many-bytes", "too-many-pixels", "decompression-bomb"],
)
def test_bad_image_bytes_are_invalid_argument_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_image(data, LIMITS, "images[3]")

    assert str(refused.value) == message


def test_a_truncated_jpeg_is_corrupt() -> None:
    whole = jpeg_bytes(Image.new("RGB", (300, 200), (10, 200, 30)))

    with pytest.raises(InvalidArgument, match=r"^images\[0\] is corrupt: "):
        decode_image(whole[: len(whole) // 2], LIMITS, "images[0]")


def test_paths_are_read_only_inside_the_image_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    (root / "escape.jpg").symlink_to(tmp_path / "secret.jpg")

    assert read_image_file("sub/a.jpg", root, LIMITS, "images[0]") == b"jpeg bytes"
    assert read_image_file(str(root / "sub" / "a.jpg"), root, LIMITS, "images[0]") == b"jpeg bytes"
    for outside in ("../secret.jpg", str(tmp_path / "secret.jpg"), "escape.jpg"):
        with pytest.raises(InvalidArgument, match=r"^images\[0\] is outside the image folder$"):
            read_image_file(outside, root, LIMITS, "images[0]")
    with pytest.raises(NotFound, match=r"^images\[0\]: no file 'sub/b.jpg' in the image folder$"):
        read_image_file("sub/b.jpg", root, LIMITS, "images[0]")
    with pytest.raises(InvalidArgument, match="this server takes no paths"):
        read_image_file("sub/a.jpg", None, LIMITS, "images[0]")

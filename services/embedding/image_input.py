"""Turning untrusted image bytes or paths into decoded RGB images, or a reason to refuse them."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from shared.errors import InvalidArgument, NotFound

# Common web formats only: every extra decoder is more attack surface for untrusted bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ImageLimits:
    """What a single image may be: encoded bytes, and pixels (width x height) before decoding."""

    max_bytes: int
    max_pixels: int


def decode_image(data: bytes, limits: ImageLimits, label: str) -> Image.Image:
    """Decodes one encoded image (JPEG, PNG, WebP, GIF's first frame, BMP) into RGB.

    Sizes are checked before decoding: the byte count first, then the dimensions in the header,
    so a small file that claims a huge canvas is refused without allocating it. Transparent pixels
    are composited onto white, as product photos are shown.

    Raises:
        InvalidArgument: empty, too many bytes, not an image of an allowed format, too many
            pixels, or corrupt (truncated, bad data); the message starts with ``label``.
    """
    check_image_bytes(data, limits, label)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidArgument(f"{label} is not a decodable image (accepted: {', '.join(ALLOWED_FORMATS)})") from None
    except Image.DecompressionBombError:
        # Pillow refuses canvases past twice its MAX_IMAGE_PIXELS (179 M) before we see the size;
        # the setting caps max_pixels below that, so this is always past our limit too.
        raise InvalidArgument(f"{label} has more than {limits.max_pixels} pixels, the limit") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise InvalidArgument(f"{label} is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    if width < 1 or height < 1:
        raise InvalidArgument(f"{label} has no pixels ({width}x{height})")
    try:
        with warnings.catch_warnings():
            # Our pixel limit is the one that applies; Pillow's own bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if image.format == "JPEG":
                # Decode large JPEGs at a reduced scale straight away (still >= 2x the model input).
                image.draft("RGB", (448, 448))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"{label} is corrupt: {exc}") from None
    return _to_rgb(image)


def check_image_bytes(data: bytes, limits: ImageLimits, label: str) -> None:
    """Refuses encoded image bytes by their count alone, without looking inside them.

    Raises:
        InvalidArgument: empty, or more than ``limits.max_bytes``; the message starts with ``label``.
    """
    if not data:
        raise InvalidArgument(f"{label} is empty")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"{label} has {len(data)} bytes; the limit is {limits.max_bytes}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def read_image_file(path: str, root: Path | None, limits: ImageLimits, label: str) -> bytes:
    """The bytes of an image file given by path, which must lie inside ``root``.

    A relative path is taken relative to ``root``; symbolic links are followed before the check,
    so a link cannot lead outside it.

    Raises:
        InvalidArgument: no ``root`` is configured, the path leaves ``root``, or the file is larger
            than ``limits.max_bytes``.
        NotFound: no such file inside ``root``.
    """
    if root is None:
        raise InvalidArgument(f"{label} is a path, but this server takes no paths (BUNDLEWISE_EMBEDDING_IMAGE_ROOT)")
    allowed = root.resolve()
    resolved = (allowed / path).resolve()
    if not resolved.is_relative_to(allowed):
        raise InvalidArgument(f"{label} is outside the image folder")
    if not resolved.is_file():
        raise NotFound(f"{label}: no file {path!r} in the image folder")
    size = resolved.stat().st_size
    if size > limits.max_bytes:
        raise InvalidArgument(f"{label} has {size} bytes; the limit is {limits.max_bytes}")
    return resolved.read_bytes()

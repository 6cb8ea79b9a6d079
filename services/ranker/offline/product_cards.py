"""Rendered product cards: the images the item fusion is trained and measured with.

The bundle datasets hold no product photos. A card (the title in black, the category path in grey,
on white, as a storefront tile shows them) is the one image every item has, made from its own data
only. The fusion's image half learns from these cards what EfficientNet-Lite0 sees in them; the
report says how much that adds over text alone, which for rendered text is expected to be little.

Cards are drawn with Pillow's bundled font, so the same item gives the same pixels on every machine.
Image vectors are cached under ``<cache_dir>/<encoder version>-cards.npz`` by the SHA-256 of the
card's text.
"""

from __future__ import annotations

import hashlib
import logging
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from services.embedding.image_encoder import ImageEncoder
from services.ranker.offline.vector_file import VectorFile

log = logging.getLogger(__name__)

CARD_SIZE = 224
ENCODE_BATCH = 32

FloatArray = npt.NDArray[np.float32]


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_card(title: str, category: str = "") -> Image.Image:
    """A ``CARD_SIZE`` square RGB card: the title wrapped in up to 6 lines, the category at the foot."""
    card = Image.new("RGB", (CARD_SIZE, CARD_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(card)
    lines = textwrap.wrap(title, width=22)[:6]
    for row, line in enumerate(lines):
        draw.text((10, 12 + 24 * row), line, fill=(20, 20, 20), font=_font(18))
    if category:
        for row, line in enumerate(textwrap.wrap(category, width=34)[:2]):
            draw.text((10, CARD_SIZE - 40 + 16 * row), line, fill=(110, 110, 110), font=_font(12))
    return card


def card_key(title: str, category: str) -> str:
    return hashlib.sha256(f"{title}\x00{category}".encode()).hexdigest()


class CachedCardVectors:
    """``encoder``'s vectors of rendered cards, read from and added to one ``.npz`` per encoder version."""

    def __init__(self, encoder: ImageEncoder, cache_dir: Path) -> None:
        self.encoder = encoder
        self._file = VectorFile(cache_dir / f"{encoder.version.replace('/', '_')}-cards.npz")

    def vectors(self, cards: Sequence[tuple[str, str]]) -> FloatArray:
        """float32 [len(cards), dim], L2-normalised, row ``i`` for the card of ``cards[i]`` (title,
        category); renders and encodes the cards the cache lacks and saves the cache when it grew."""
        missing = list(dict.fromkeys(card for card in cards if card_key(*card) not in self._file))
        for start in range(0, len(missing), ENCODE_BATCH):
            batch = missing[start : start + ENCODE_BATCH]
            pixels = [self.encoder.preprocess(render_card(*card)) for card in batch]
            for card, vector in zip(batch, self.encoder.encode(pixels), strict=True):
                self._file[card_key(*card)] = vector
            if (start // ENCODE_BATCH) % 20 == 0:
                log.info(
                    "encoded %d of %d new product cards with %s", start + len(batch), len(missing), self.encoder.name
                )
        if missing:
            self._file.save()
        if not cards:
            return np.empty((0, self.encoder.dim), dtype=np.float32)
        return np.stack([self._file[card_key(*card)] for card in cards]).astype(np.float32)

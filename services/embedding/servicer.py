"""The gRPC face of the embedding service: validate, hand to the core, translate back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.embedding.audio_encoder import AudioEncoder
from services.embedding.audio_input import AudioLimits, decode_audio
from services.embedding.batcher import Vectors
from services.embedding.embedder import AudioEmbedder, ImageEmbedder, TextEmbedder
from services.embedding.fusion import ItemFusion, item_document
from services.embedding.image_encoder import ImageEncoder
from services.embedding.image_input import read_image_file
from services.embedding.settings import (
    MAX_AUDIO_CLIPS_PER_CALL,
    MAX_AUDIO_SECONDS,
    MAX_IMAGES_PER_CALL,
    MAX_ITEMS_PER_CALL,
    MAX_TEXTS_PER_CALL,
)
from services.embedding.spoken_query import SpokenQueryEmbedder
from services.embedding.text_encoder import TextEncoder, TextRole
from shared.errors import InvalidArgument, NotFound

SERVICE_FULL_NAME: str = embedding_pb2.DESCRIPTOR.services_by_name["Embedding"].full_name

# The fusion's weights are the project's own, trained on BundleRec_Amazon, whose repository states no license.
FUSION_LICENSE = "NOASSERTION"

# UNSPECIFIED means the common case: product text.
_ROLES = {
    embedding_pb2.TEXT_ROLE_UNSPECIFIED: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_PASSAGE: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_QUERY: TextRole.QUERY,
}


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):  # type: ignore[misc]
    """``bundlewise.embedding.v1.Embedding`` over one embedder per encoder."""

    def __init__(
        self,
        text_embedders: Sequence[TextEmbedder],
        max_text_chars: int,
        image_embedders: Sequence[ImageEmbedder] = (),
        image_root: Path | None = None,
        audio_embedders: Sequence[AudioEmbedder] = (),
        audio_limits: AudioLimits | None = None,
        spoken_queries: SpokenQueryEmbedder | None = None,
        item_fusion: ItemFusion | None = None,
        no_item_fusion_reason: str = "this server has no item fusion",
    ) -> None:
        """``text_embedders[0]`` is the default text model, ``image_embedders[0]`` the default image
        model, ``audio_embedders[0]`` the default audio model.

        Texts past ``max_text_chars`` are refused; images past their embedder's limits and clips past
        ``audio_limits`` too; images may be given by path only inside ``image_root`` (None: not at
        all). ``spoken_queries`` None: EmbedSpokenQuery answers NOT_FOUND. ``item_fusion`` fuses
        the default text and image encoders' vectors (it must have been trained on them); None:
        EmbedItems answers NOT_FOUND with ``no_item_fusion_reason``.
        """
        if not text_embedders:
            raise ValueError("the embedding servicer needs at least one text encoder")
        self._default_text = text_embedders[0]
        self._texts_by_name = {embedder.encoder.name: embedder for embedder in text_embedders}
        self._max_text_chars = max_text_chars
        self._images_by_name = {embedder.encoder.name: embedder for embedder in image_embedders}
        self._default_image = image_embedders[0] if image_embedders else None
        self._image_root = image_root
        self._audio_by_name = {embedder.encoder.name: embedder for embedder in audio_embedders}
        self._default_audio = audio_embedders[0] if audio_embedders else None
        self._audio_limits = audio_limits or AudioLimits(max_bytes=10 * 1024 * 1024, max_seconds=MAX_AUDIO_SECONDS)
        self._spoken_queries = spoken_queries
        self._item_fusion = item_fusion
        self._no_item_fusion_reason = no_item_fusion_reason

    def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedTextsResponse:
        """Embeds ``request.texts``; see the proto for the contract.

        Raises:
            NotFound: ``request.model`` names no loaded text encoder (the message lists those loaded).
            InvalidArgument: no texts, more than 1024, an empty or whitespace-only text, a text
                longer than the character limit, or an unknown role; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        embedder = self._text_embedder_for(request.model)
        texts = list(request.texts)
        _check_texts(texts, self._max_text_chars)
        role = _ROLES.get(request.role)
        if role is None:
            raise InvalidArgument(f"role {request.role} is not a known TextRole")
        vectors = embedder.embed(texts, role, context.time_remaining())
        encoder = embedder.encoder
        return embedding_pb2.EmbedTextsResponse(
            vectors=_to_proto(vectors), model=encoder.name, model_version=encoder.version, dim=encoder.dim
        )

    def EmbedImages(
        self, request: embedding_pb2.EmbedImagesRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedImagesResponse:
        """Checks and embeds ``request.images``; see the proto for the contract.

        Paths are read here; images in the vector cache (by the SHA-256 of their bytes) are answered
        from it undecoded, the others decoded and preprocessed on this call's thread, then batched
        with other calls'.

        Raises:
            NotFound: unknown image model, or a path that names no file in the image folder.
            InvalidArgument: no images, more than 64, or an image that is empty, too large, not
                decodable, corrupt, or a path outside the image folder; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        embedder = self._image_embedder_for(request.model)
        images = list(request.images)
        if not images:
            raise InvalidArgument("images is empty; send at least one image")
        if len(images) > MAX_IMAGES_PER_CALL:
            raise InvalidArgument(f"{len(images)} images in one call; the limit is {MAX_IMAGES_PER_CALL}, split it")
        data = [self._image_bytes(image, embedder, f"images[{index}]") for index, image in enumerate(images)]
        vectors = embedder.embed(data, context.time_remaining())
        encoder = embedder.encoder
        return embedding_pb2.EmbedImagesResponse(
            vectors=_to_proto(vectors), model=encoder.name, model_version=encoder.version, dim=encoder.dim
        )

    def EmbedAudio(
        self, request: embedding_pb2.EmbedAudioRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedAudioResponse:
        """Decodes, checks and embeds ``request.clips``; see the proto for the contract.

        Clips are decoded, resampled and turned into log-mels on this call's thread, then batched
        with other calls' clips of the same padded length.

        Raises:
            NotFound: unknown audio model (or none loaded).
            InvalidArgument: no clips, more than 16, or a clip that is empty, too large, not
                decodable, of another format, too short or too long; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        embedder = self._audio_embedder_for(request.model)
        clips = list(request.clips)
        if not clips:
            raise InvalidArgument("clips is empty; send at least one clip")
        if len(clips) > MAX_AUDIO_CLIPS_PER_CALL:
            raise InvalidArgument(f"{len(clips)} clips in one call; the limit is {MAX_AUDIO_CLIPS_PER_CALL}, split it")
        encoder = embedder.encoder
        features = [
            encoder.features(decode_audio(clip, self._audio_limits, f"clips[{index}]"))
            for index, clip in enumerate(clips)
        ]
        vectors = embedder.embed(features, context.time_remaining())
        return embedding_pb2.EmbedAudioResponse(
            vectors=_to_proto(vectors), model=encoder.name, model_version=encoder.version, dim=encoder.dim
        )

    def EmbedSpokenQuery(
        self, request: embedding_pb2.EmbedSpokenQueryRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedSpokenQueryResponse:
        """Transcribes ``request.audio`` and embeds the transcript as a query; see the proto.

        Raises:
            NotFound: this server has no speech model.
            InvalidArgument: bad audio (as EmbedAudio, labelled ``audio``), a language the server
                does not take, or no speech recognised.
            ResourceExhausted: too many spoken queries in progress.
            Unavailable: the spoken-query budget or the deadline ran out, or the server is stopping.
        """
        if self._spoken_queries is None:
            raise NotFound("this server has no speech model for spoken queries (run `make models`)")
        samples = decode_audio(request.audio, self._audio_limits, "audio")
        query = self._spoken_queries.embed(samples, request.language or None, context.time_remaining())
        return embedding_pb2.EmbedSpokenQueryResponse(
            transcript=query.transcript.text,
            language=query.transcript.language,
            language_probability=query.transcript.language_probability,
            vector=embedding_pb2.Vector(values=query.vector.tolist()),
            text_model=query.text_model.name,
            text_model_version=query.text_model.version,
            dim=query.text_model.dim,
            speech_model=query.speech_model.name,
            speech_model_version=query.speech_model.version,
        )

    def EmbedItems(
        self, request: embedding_pb2.EmbedItemsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedItemsResponse:
        """Embeds each item's document and image with the default encoders and fuses them; see the proto.

        Raises:
            NotFound: no item fusion on this server (the message says why).
            InvalidArgument: no items, more than 256, an item without a title, a document past the
                character limit, or a bad image; the message names the index.
            ResourceExhausted: a batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        fusion = self._item_fusion
        if fusion is None:
            raise NotFound(self._no_item_fusion_reason)
        items = list(request.items)
        documents = _item_documents(items, self._max_text_chars)
        with_image = [index for index, item in enumerate(items) if item.HasField("image")]
        image_vectors = None
        if with_image:
            image_embedder = self._image_embedder_for("")
            labels = [f"items[{i}].image" for i in with_image]
            data = [
                self._image_bytes(items[i].image, image_embedder, label)
                for i, label in zip(with_image, labels, strict=True)
            ]
            image_vectors = np.zeros((len(items), image_embedder.encoder.dim), dtype=np.float32)
            image_vectors[with_image] = image_embedder.embed(data, context.time_remaining(), labels)
        text_vectors = self._default_text.embed(documents, TextRole.PASSAGE, context.time_remaining())
        has_image = np.zeros(len(items), dtype=bool)
        has_image[with_image] = True
        fused = fusion.fuse(np.asarray(text_vectors, dtype=np.float32), image_vectors, has_image)
        return embedding_pb2.EmbedItemsResponse(
            items=[
                embedding_pb2.ItemVector(
                    item_id=item.item_id,
                    vector=embedding_pb2.Vector(values=row.tolist()),
                    modalities=["text", "image"] if image else ["text"],
                )
                for item, row, image in zip(items, fused, has_image, strict=True)
            ],
            model=fusion.name,
            model_version=fusion.version,
            dim=fusion.dim,
            text_model_version=self._default_text.encoder.version,
            image_model_version=self._default_image.encoder.version if self._default_image is not None else "",
        )

    def DescribeModels(
        self, request: embedding_pb2.DescribeModelsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.DescribeModelsResponse:
        """Every loaded encoder: the default text one first, the other text ones, the image ones, the
        audio ones; then the item fusion."""
        texts = [self._default_text.encoder] + [
            embedder.encoder for embedder in self._texts_by_name.values() if embedder is not self._default_text
        ]
        infos = [_model_info(encoder, "text") for encoder in texts]
        infos += [_model_info(embedder.encoder, "image") for embedder in self._images_by_name.values()]
        infos += [_model_info(embedder.encoder, "audio") for embedder in self._audio_by_name.values()]
        if self._item_fusion is not None:
            fusion = self._item_fusion
            infos.append(
                embedding_pb2.ModelInfo(
                    name=fusion.name,
                    version=fusion.version,
                    modality="item",
                    dim=fusion.dim,
                    device="cpu",
                    license=FUSION_LICENSE,
                )
            )
        return embedding_pb2.DescribeModelsResponse(models=infos)

    def _image_bytes(self, image: embedding_pb2.ImageInput, embedder: ImageEmbedder, label: str) -> bytes:
        source = image.WhichOneof("source")
        if source == "data":
            return image.data
        if source == "path":
            return read_image_file(image.path, self._image_root, embedder.limits, label)
        raise InvalidArgument(f"{label} has neither data nor path")

    def _text_embedder_for(self, model: str) -> TextEmbedder:
        if not model:
            return self._default_text
        embedder = self._texts_by_name.get(model)
        if embedder is None:
            known = ", ".join(sorted(self._texts_by_name))
            raise NotFound(f"no text encoder named {model!r}; loaded: {known}")
        return embedder

    def _image_embedder_for(self, model: str) -> ImageEmbedder:
        embedder = self._images_by_name.get(model) if model else self._default_image
        if embedder is None:
            known = ", ".join(sorted(self._images_by_name)) or "none"
            raise NotFound(f"no image encoder named {model!r}; loaded: {known}")
        return embedder

    def _audio_embedder_for(self, model: str) -> AudioEmbedder:
        embedder = self._audio_by_name.get(model) if model else self._default_audio
        if embedder is None:
            known = ", ".join(sorted(self._audio_by_name)) or "none"
            raise NotFound(f"no audio encoder named {model!r}; loaded: {known}")
        return embedder


def _model_info(encoder: TextEncoder | ImageEncoder | AudioEncoder, modality: str) -> embedding_pb2.ModelInfo:
    return embedding_pb2.ModelInfo(
        name=encoder.name,
        version=encoder.version,
        modality=modality,
        dim=encoder.dim,
        device=encoder.device,
        license=encoder.license,
    )


def _to_proto(vectors: Vectors) -> list[embedding_pb2.Vector]:
    return [embedding_pb2.Vector(values=row.tolist()) for row in np.asarray(vectors)]


def _check_texts(texts: list[str], max_chars: int) -> None:
    if not texts:
        raise InvalidArgument("texts is empty; send at least one text")
    if len(texts) > MAX_TEXTS_PER_CALL:
        raise InvalidArgument(f"{len(texts)} texts in one call; the limit is {MAX_TEXTS_PER_CALL}, split it")
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidArgument(f"texts[{index}] is empty or only whitespace")
        if len(text) > max_chars:
            raise InvalidArgument(f"texts[{index}] has {len(text)} characters; the limit is {max_chars}")


def _item_documents(items: list[embedding_pb2.ItemInput], max_chars: int) -> list[str]:
    if not items:
        raise InvalidArgument("items is empty; send at least one item")
    if len(items) > MAX_ITEMS_PER_CALL:
        raise InvalidArgument(f"{len(items)} items in one call; the limit is {MAX_ITEMS_PER_CALL}, split it")
    documents = []
    for index, item in enumerate(items):
        if not item.title.strip():
            raise InvalidArgument(f"items[{index}].title is empty; every item needs a title")
        document = item_document(item.title, list(item.category_paths), item.description)
        if len(document) > max_chars:
            raise InvalidArgument(
                f"items[{index}] has {len(document)} characters of title, category paths and description; "
                f"the limit is {max_chars}"
            )
        documents.append(document)
    return documents

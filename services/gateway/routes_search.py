"""Search a catalog's bundles by a shopper's query: typed (``GET /v1/bundles/search``) or spoken
(``POST /v1/bundles/search/spoken``: the clip is transcribed by the embedding service's speech model,
then searched like typed text)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from services.gateway.dependencies import GuardedRoute, requires
from services.gateway.domain import BundleSearchResult
from services.gateway.errors import SearchNotConfigured, UnprocessableRequest
from services.gateway.ports import BundleSearchSource, Transcriber
from services.gateway.problems import access_responses, problem_doc
from services.gateway.schemas import BundleItemOut
from shared.events import CatalogId
from shared.store.api_keys import Scope

router = APIRouter(tags=["bundles"], route_class=GuardedRoute)

MAX_K = 50
MAX_QUERY_CHARS = 200
# Control characters carry no meaning in a search box and break logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _readable_query(value: str) -> str:
    if not value.strip():
        raise ValueError("the query is blank; send the words the shopper typed")
    if _CONTROL.search(value):
        raise ValueError("the query holds control characters (newlines, tabs, ...); send plain text")
    return value.strip()


SearchQuery = Annotated[str, AfterValidator(_readable_query)]


class FoundBundleOut(BaseModel):
    bundle_id: str
    name: str
    items: list[BundleItemOut]
    score: float = Field(
        description="Cosine similarity of the query and the bundle's items, from -1 to 1; higher is closer."
    )
    total_price: float | None = Field(description="What the bundle costs; null when a price is unknown.")
    discounted_price: float | None = Field(description="Bundle price after its discount; null when none.")
    explanation: str = Field(description='Why it is shown, e.g. "Matches your search “camera kit”".')


class BundleSearchResponse(BaseModel):
    """Live bundles matching ``query``, best first; never a retired bundle or one holding a retired item."""

    catalog_id: str
    query: str = Field(description="The query as searched (surrounding spaces removed).")
    bundles: list[FoundBundleOut]
    model_version: str = Field(description="The text encoder that embedded the query and the bundles.")


class SpokenSearchResponse(BundleSearchResponse):
    """Live bundles matching what the shopper said, best first, with what was heard."""

    language: str = Field(description="The language transcribed (ISO 639-1), detected unless given.")
    speech_model_version: str


AUDIO_TYPES = (
    "audio/wav",
    "audio/x-wav",
    "audio/flac",
    "audio/ogg",
    "audio/mpeg",
    "audio/webm",
    "audio/mp4",
    "audio/x-m4a",
    "application/octet-stream",
)


async def transcriber(request: Request) -> Transcriber:
    source: Transcriber | None = request.app.state.gateway.transcriber
    if source is None:
        raise SearchNotConfigured("spoken search is not configured on this gateway: set BUNDLEWISE_EMBEDDING_ADDR")
    return source


async def search_source(request: Request) -> BundleSearchSource:
    source: BundleSearchSource | None = request.app.state.gateway.search
    if source is None:
        raise SearchNotConfigured("bundle search is not configured on this gateway (no ranker)")
    return source


@router.get(
    "/v1/bundles/search",
    summary="Search a catalog's bundles by a shopper's typed query (Chinese, English, ...)",
    response_model=BundleSearchResponse,
    dependencies=[requires(Scope.RECOMMENDATIONS_READ)],
    responses={
        **access_responses(),
        404: problem_doc("The catalog has no live bundles."),
        422: problem_doc("A parameter is invalid (blank or too long query, k out of range); `detail` names it."),
        501: problem_doc("This gateway's ranker cannot search (it has no embedding service)."),
        503: problem_doc(
            "The ranker or the embedding service is unavailable, or the catalog's bundles are not embedded "
            "for search yet (`bundlewise backfill-vectors`); retry after Retry-After seconds."
        ),
    },
)
async def search_bundles(
    source: Annotated[BundleSearchSource, Depends(search_source)],
    q: Annotated[
        SearchQuery,
        Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What the shopper typed, e.g. camera kit."),
    ],
    catalog_id: Annotated[CatalogId, Query(description="The catalog to search, e.g. amazon.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many bundles, at most.")] = 10,
) -> BundleSearchResponse:
    """At most ``k`` bundles whose items (titles and categories) best match ``q``, best first; each
    with its items, a score and an explanation. Bundles synced since the catalog's bundles were last
    embedded are not found. Needs the `recommendations:read` scope."""
    return _response(catalog_id, q, await source.search_bundles(catalog_id=catalog_id, query=q, k=k))


def _response(catalog_id: str, query: str, result: BundleSearchResult) -> BundleSearchResponse:
    return BundleSearchResponse(
        catalog_id=catalog_id,
        query=query,
        bundles=[
            FoundBundleOut(
                bundle_id=bundle.bundle_id,
                name=bundle.name,
                items=[
                    BundleItemOut(item_id=item.item_id, title=item.title, price=item.price, image_url=item.image_url)
                    for item in bundle.items
                ],
                score=bundle.score,
                total_price=bundle.total_price,
                discounted_price=bundle.discounted_price,
                explanation=bundle.explanation,
            )
            for bundle in result.bundles
        ],
        model_version=result.model_version,
    )


@router.post(
    "/v1/bundles/search/spoken",
    summary="Search a catalog's bundles by what a shopper said (a recorded clip, Chinese or English)",
    response_model=SpokenSearchResponse,
    dependencies=[requires(Scope.RECOMMENDATIONS_READ)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One clip of speech, up to 30 s: WAV, FLAC, OGG (Vorbis, Opus), MP3, or what browsers "
            "record (WebM Opus, M4A AAC), any sample rate.",
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in AUDIO_TYPES},
        }
    },
    responses={
        **access_responses(),
        404: problem_doc("The catalog has no live bundles."),
        413: problem_doc("The clip is larger than the gateway's request limit."),
        400: problem_doc("The clip is empty, not decodable, too long or holds no speech; `detail` says which."),
        422: problem_doc("A parameter is invalid, or no words were heard; `detail` says which."),
        501: problem_doc("This gateway has no speech model to ask (BUNDLEWISE_EMBEDDING_ADDR is not set)."),
        503: problem_doc("The speech model, the ranker or the search index is unavailable; retry later."),
    },
)
async def search_bundles_spoken(
    request: Request,
    speech: Annotated[Transcriber, Depends(transcriber)],
    source: Annotated[BundleSearchSource, Depends(search_source)],
    catalog_id: Annotated[CatalogId, Query(description="The catalog to search, e.g. amazon.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many bundles, at most.")] = 10,
    language: Annotated[
        str, Query(pattern=r"^([a-z]{2})?$", description='"en", "zh", ...; empty: detected from the clip.')
    ] = "",
) -> SpokenSearchResponse:
    """Transcribes the clip (the embedding service's Whisper) and searches its words as typed text."""
    audio = await request.body()
    if not audio:
        raise UnprocessableRequest("the request body is empty: send the recorded clip as the body")
    heard = await speech.transcribe(audio=audio, language=language)
    query = heard.text.strip()[:MAX_QUERY_CHARS]
    if not query:
        raise UnprocessableRequest("no words were heard in the clip; record the query again, closer to the mic")
    found = _response(catalog_id, query, await source.search_bundles(catalog_id=catalog_id, query=query, k=k))
    return SpokenSearchResponse(**found.model_dump(), language=heard.language, speech_model_version=heard.model_version)

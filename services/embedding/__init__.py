"""The embedding service: turns product and query text into vectors with a pretrained encoder.

It serves ``bundlewise.embedding.v1.Embedding`` over gRPC. Requests from concurrent callers are
batched dynamically into one forward pass of all-MiniLM-L6-v2 (384 dimensions, mean-pooled,
L2-normalised), on CUDA in float16 when a GPU is present and on the CPU in float32 otherwise. Every
response carries the model version, so vectors from different weights are never compared.
"""

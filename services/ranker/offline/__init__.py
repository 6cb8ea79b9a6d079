"""Offline training and evaluation of bundle recommenders (issue 5): the papers' protocol on Youshu.

Pieces, each usable alone: :mod:`~services.ranker.offline.data` (U-B, U-I and B-I graphs as torch
sparse matrices and the held-out splits), :mod:`~services.ranker.offline.metrics` (Recall@K and
NDCG@K), :mod:`~services.ranker.offline.evaluation` (full ranking of every bundle with the training
pairs masked), :mod:`~services.ranker.offline.baselines` and :mod:`~services.ranker.offline.models`
(the scorers), :mod:`~services.ranker.offline.training` (BPR training with checkpoints and resume),
and the command ``python -m services.ranker.offline.train_youshu``. Nothing here is imported by the
serving path; the ranker will load the artifacts these produce.
"""

"""Stage 3, embedding: window vectors, one job per shard (the GPU job on a cluster).

    engine.py    Embedder: tokenize, pack by token budget, run the encoder, pool the
                 summary ([CLS]) and mean vectors, on a GPU or the CPU
    shards.py    the embed_shard job; reading embedding shards back, checked to share one
                 embedding space

Contract: embeddings/shard_NNNNN.parquet, one row per window (window keys, token count,
passes, `cls` and `mean` float16 vectors), its provenance the run's `EmbeddingSpace`.
"""

"""Stage 2, windows: every sequence cut into overlapping windows of the encoder's size
(`tiling.tile_starts`), its bases cleaned (`bases`), written as Parquet shards of a size
the DAG plans from the sequence lengths alone (`shards`). Contract: shard_NNNNN.parquet
(WINDOWS_SCHEMA) and sequences.parquet (SEQUENCES_SCHEMA), all written together or not
at all, with the provenance of the reference and the window settings."""

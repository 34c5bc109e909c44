"""dnalm: classify DNA sequences of any length with a DNABERT-style encoder.

Stages, one module each: extract (regions), windows (cutting + shards),
tokenize (k-mer ids), encoder (loading + checks), embed (per-shard vectors),
heads (the aggregating classifiers), train, classify.
"""

__version__ = "0.1.0"

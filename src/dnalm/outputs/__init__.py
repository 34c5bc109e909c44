"""Stage 5, outputs: what a user reads.

    classify.py   every head applied to the embedding shards (one job per group of shards),
                  gathered into the per-sequence tables
    tracks.py     BED of calls, bedGraph and bigWig of each class probability
    report.py     figures and tables for `snakemake --report`

Contract: classify/<head>/predictions.tsv and .parquet (seq_id chrom start end strand length
n_windows n_fraction pred_label prob_<class>... [true_label split]), classify/<head>/tracks/,
report/ (metrics.tsv, figures, provenance.tsv).
"""

"""Stage 1, inputs: which sequences to classify, their labels and splits, and what the
DAG needs to know of them before any job.

    fasta.py     FASTA access through pysam, indexes checked before they are trusted
    sources/     one module per kind of input (bed, tiles, fasta) behind one registry
    regions.py   the regions table (REGIONS_SCHEMA): written by extract_regions and
                 extract_labels, read by every later stage
    labels.py    label and split vocabulary, the labels table, the rules labels obey
    splits.py    train/val/test assignment shared by every learner of a run
    plan.py      the DAG-time input plan and its cache

Contract: regions/regions.parquet (coordinates) and regions/labels.parquet (label, split),
0-based half-open coordinates; bad input is one InputError naming file, line and fix.
"""

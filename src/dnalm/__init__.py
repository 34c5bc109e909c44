"""dnalm: classify DNA sequences of any length with DNA language models, at genome scale.

The package by stage (docs/layout.md has the tree, the contracts and the import rule):
inputs (which sequences, labels, splits, the DAG-time plan) -> windows -> encoders (every
model family behind one interface) -> embedding (window vectors) -> learning (heads,
fine-tuning, pretraining, baselines) -> outputs (tables, tracks, report), with the
workflow glue on top and a small foundation below (errors, io, settings, identity,
tiling, threads, compute, cli).
"""

__version__ = "0.1.0"

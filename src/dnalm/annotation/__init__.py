"""Genome annotation at base resolution: a token-classification model labels every base
of a genome with a feature class (say CDS on the + strand, CDS on the - strand) or
background.

- features: the annotated features of a GFF3 or BED6+type file (checked, file:line),
  per-base training labels and the truth;
- split: training, validation and test parts of the genome, and their windows;
- tagger: the encoder, a head on its token states and the map from tokens to bases
  (`WindowTokenizer.spans`, for every family);
- train (rule train_annotator), infer (annotate_shard: per-base probabilities of a shard
  of windows, overlaps weighted to the windows' middles), baseline (annotation_baseline:
  a per-base k-mer logistic regression);
- calls, metrics, gather (gather_annotation): thresholds chosen on validation, called
  features as GFF3 and BED, bigWig tracks, per-base and per-feature scores on the test
  part against the baselines;
- stage: what the workflow checks and plans before any job.
"""

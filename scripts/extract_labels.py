"""Rule extract_labels: the label and split of every sequence (empty when none are given)."""

from dnalm.extract import labels_for, read_regions, write_labels
from dnalm.workflow import step

with step(snakemake):
    regions = read_regions(snakemake.input.regions)
    labels = labels_for(regions, snakemake.params.source)
    write_labels(labels, snakemake.output[0])
    print(f"{int(labels['label'].notna().sum())} of {len(labels)} sequences labelled")

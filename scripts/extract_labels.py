"""Rule extract_labels: the label and split of every sequence (empty when none are given)."""

from dnalm.inputs.regions import read_regions, write_labels
from dnalm.inputs.sources import source_for
from dnalm.settings import InputSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    regions = read_regions(snakemake.input.regions)
    labels = source_for(InputSettings.from_section(snakemake.params.source), check=False).labels(regions)
    write_labels(labels, snakemake.output[0])
    print(f"{int(labels['label'].notna().sum())} of {len(labels)} sequences labelled")

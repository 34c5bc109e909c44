"""Rule extract_regions: validate the input, write the coordinates of every sequence."""

from dnalm.inputs.fasta import fai_digest
from dnalm.inputs.regions import write_coordinates
from dnalm.inputs.sources import source_for
from dnalm.settings import InputSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    source = source_for(InputSettings.from_section({**snakemake.params.source, "bed": str(snakemake.params.bed)}))
    fasta = snakemake.input.fasta  # the configured FASTA, or its indexed link or bgzip copy
    regions = source.regions(source.records(fasta), labels=False)
    provenance = {"stage": "regions", "mode": source.mode, "reference": source.fasta,
                  "reference_fai_sha256": fai_digest(fasta)}
    write_coordinates(regions, snakemake.output[0], provenance)
    print(f"{len(regions)} sequences from {source.mode} input; "
          f"{regions.attrs.get('skipped_lines', 0)} comment/track/browser line(s) skipped")

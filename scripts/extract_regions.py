"""Rule extract_regions: validate the input, write the coordinates of every sequence."""

from dnalm.extract import RegionSource, fasta_records, load_regions, write_coordinates
from dnalm.fasta import fai_digest
from dnalm.workflow import step

with step(snakemake):
    source = RegionSource.from_config({**snakemake.params.source, "bed": str(snakemake.params.bed)})
    fasta = snakemake.input.fasta  # the configured FASTA, or its indexed link or bgzip copy
    regions = load_regions(source, fasta_records(source, fasta), labels=False)
    provenance = {"stage": "regions", "mode": source.mode, "reference": source.fasta,
                  "reference_fai_sha256": fai_digest(fasta)}
    write_coordinates(regions, snakemake.output[0], provenance)
    print(f"{len(regions)} sequences from {source.mode} input; "
          f"{regions.attrs.get('skipped_lines', 0)} comment/track/browser line(s) skipped")

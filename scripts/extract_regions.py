"""Rule extract_regions: validate the input, write the coordinates of every sequence."""

from dnalm.extract import RegionSource, check_fasta_records, load_regions, write_coordinates
from dnalm.io import fai_digest
from dnalm.workflow import step

with step(snakemake):
    source = RegionSource.from_config(snakemake.params.source)
    if source.mode == "fasta":
        check_fasta_records(source.sequences)
    regions = load_regions(source)
    provenance = {"stage": "regions", "mode": source.mode, "reference": source.fasta,
                  "reference_fai_sha256": fai_digest(source.fasta)}
    write_coordinates(regions, snakemake.output[0], provenance)
    print(f"{len(regions)} sequences from {source.mode} input")

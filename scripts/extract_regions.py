"""Rule extract_regions: validate the input and write the regions table."""

from dnalm.extract import RegionSource, load_regions, regions_to_arrow
from dnalm.io import fai_digest, write_table_atomic
from dnalm.workflow import step

with step(snakemake):
    source = RegionSource.from_config(snakemake.params.source)
    regions = load_regions(source)
    provenance = {"stage": "regions", "mode": source.mode, "reference": source.fasta,
                  "reference_fai_sha256": fai_digest(source.fasta)}
    write_table_atomic(regions_to_arrow(regions), snakemake.output[0], provenance)
    labelled = int(regions["label"].notna().sum())
    print(f"{len(regions)} sequences ({labelled} labelled) from {source.mode} input")

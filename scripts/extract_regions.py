"""Rule extract_regions: validate the input; write the regions and labels tables."""

from dnalm.extract import RegionSource, load_regions, write_regions
from dnalm.io import fai_digest
from dnalm.workflow import step

with step(snakemake):
    source = RegionSource.from_config(snakemake.params.source)
    regions = load_regions(source)
    provenance = {"stage": "regions", "mode": source.mode, "reference": source.fasta,
                  "reference_fai_sha256": fai_digest(source.fasta)}
    write_regions(regions, snakemake.output.regions, snakemake.output.labels, provenance)
    labelled = int(regions["label"].notna().sum())
    print(f"{len(regions)} sequences ({labelled} labelled) from {source.mode} input")

"""Rule make_windows: cut every sequence into windows, write the shards."""

from pathlib import Path

from dnalm.io import read_parquet, read_provenance
from dnalm.settings import WindowSpec
from dnalm.windows.shards import write_shards
from dnalm.workflow.jobs import step

with step(snakemake):
    spec = WindowSpec(size=snakemake.params.size, stride=snakemake.params.stride,
                      per_shard=snakemake.params.per_shard, iupac=snakemake.params.iupac,
                      mirrored=snakemake.params.mirrored)
    regions = read_parquet(snakemake.input.regions, rule="extract_regions").to_pandas()
    out_dir = Path(snakemake.output.sequences).parent
    write_shards(regions, snakemake.input.fasta, spec, str(out_dir), snakemake.params.n_shards,
                 reference=read_provenance(snakemake.input.regions, rule="extract_regions").get("reference"))

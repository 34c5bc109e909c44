rule make_windows:
    input:
        regions=out("regions/regions.parquet"),
        fasta=RUN.fasta,
    output:
        shards=WINDOW_SHARDS,
        sequences=out("windows/sequences.parquet"),
    log:
        logfile("make_windows/make_windows.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        size=S.windows.size,
        stride=S.windows.stride,
        per_shard=S.windows.per_shard,
        iupac=S.windows.iupac,
        mirrored=S.windows.mirrored,  # encoder.strands both: strand-free windows
        n_shards=len(RUN.shards),
    script:
        "../scripts/make_windows.py"

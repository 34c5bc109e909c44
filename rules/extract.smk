rule extract_regions:
    input:
        fasta=INPUT.fasta,
        regions_file=[
            f for f in (INPUT.bed if INPUT.mode == "bed" else "", INPUT.labels) if f
        ],
    output:
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
    log:
        logfile("extract_regions/extract_regions.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        source=config["input"],
    script:
        "../scripts/extract_regions.py"

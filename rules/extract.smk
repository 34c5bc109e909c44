# Coordinates and labels are two rules: the windows and embeddings depend only on
# the coordinates, whose content (a digest made when the DAG is built) is the
# param that re-runs them. The BED is therefore no input of extract_regions and
# its path reaches the job as a pathlib.Path, a param type Snakemake does not
# compare between runs: a BED edited, or replaced by a new file, only in its label
# or split columns re-runs extract_labels, training and classification, and
# nothing upstream. The FASTA is `ancient` for the same reason; its bases are read
# (and tracked) by make_windows.


rule bgzip_fasta:
    input:
        SOURCE.fasta,
    output:
        fasta=FASTA_COPY,
        index=[f"{f}.{ext}" for f in FASTA_COPY for ext in ("fai", "gzi")],
    log:
        logfile("bgzip_fasta/bgzip_fasta.log"),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/bgzip_fasta.py"


rule extract_regions:
    input:
        fasta=ancient(RUN.fasta),
    output:
        out("regions/regions.parquet"),
    log:
        logfile("extract_regions/extract_regions.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        source=SOURCE.region_params(),
        bed=Path(S.input.bed),
        coordinates=RUN.inputs.coordinates_digest,
    script:
        "../scripts/extract_regions.py"


rule extract_labels:
    input:
        regions=out("regions/regions.parquet"),
        labels_file=[SOURCE.label_file] if SOURCE.label_file else [],
    output:
        out("regions/labels.parquet"),
    log:
        logfile("extract_labels/extract_labels.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        source=SOURCE.label_params(),
    script:
        "../scripts/extract_labels.py"

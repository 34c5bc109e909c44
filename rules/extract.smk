# Coordinates and labels are two rules: the windows and embeddings depend only on
# the coordinates, whose content (a digest made when the DAG is built) is the
# param that re-runs them. The region files are `ancient` for that reason: a BED
# edited only in its label or split columns re-runs extract_labels, training and
# classification, and nothing upstream. The FASTA's bases are read (and tracked)
# by make_windows.


rule extract_regions:
    input:
        fasta=ancient(INPUT.fasta),
        regions_file=[ancient(INPUT.bed)] if INPUT.mode == "bed" else [],
    output:
        out("regions/regions.parquet"),
    log:
        logfile("extract_regions/extract_regions.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        source=REGION_SOURCE,
        coordinates=COORDINATES_DIGEST,
    script:
        "../scripts/extract_regions.py"


rule extract_labels:
    input:
        regions=out("regions/regions.parquet"),
        labels_file=[f for f in (LABEL_SOURCE["bed"], LABEL_SOURCE["labels"]) if f],
    output:
        out("regions/labels.parquet"),
    log:
        logfile("extract_labels/extract_labels.log"),
    conda:
        "../envs/cpu.yaml"
    params:
        source=LABEL_SOURCE,
    script:
        "../scripts/extract_labels.py"

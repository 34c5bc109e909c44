"""The glue between Snakemake and the package.

    dag.py       `plan_run`: the run's plan and every check made when the DAG is built
                 (rules/common.smk calls it once)
    jobs.py      what every job's script runs in (`step`: log, threads, one clear error,
                 the package's origin checked), the encoder a job loads, the outdir lock
    summary.py   what a finished run prints
"""

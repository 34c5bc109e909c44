#!/usr/bin/env bash
# Snakemake runs this once inside each conda env it creates (--sdm conda): the rules'
# scripts import the dnalm package, installed here from the checkout that runs the
# workflow, whose path rules/common.smk exports as DNALM_CHECKOUT. Editable, so the env
# follows that checkout; a job refuses to run with a dnalm from anywhere else.
set -euo pipefail
python -m pip install --no-deps --editable "${DNALM_CHECKOUT:?is set by rules/common.smk when Snakemake builds the DAG}"

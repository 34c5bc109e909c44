"""Variant effects: what a change of bases does to what the run's models read.

Owns the variant studies of a run: the variants of a VCF (`records`: read against the
reference, REF checked, multi-allelic records split, every ALT that cannot be scored listed
with its reason) and the single-base changes of saturation mutagenesis (`mutagenesis`); the
ref and alt windows around each (`alleles`); the scores (`scoring`: supervised by every
head, zero-shot from the masked LM, embedding distance); and the outputs (`vcf_out`: the VCF
with the scores as INFO fields; `mutagenesis`: per-base tracks and heatmap). `stage` holds
the DAG-time plan and the jobs. Contract: every ALT of the input is in scores.tsv or in
skipped.tsv, in the input's order; swapping REF and ALT negates every signed score.
"""

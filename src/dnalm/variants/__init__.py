"""Variant effects: read a VCF against the reference, build allele windows, score, write back."""

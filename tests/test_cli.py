"""The dnalm command: provenance, model checks, the tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path

from dnalm.cli import main


def test_build_check_and_provenance(tmp_path, capsys):
    model = tmp_path / "tiny"
    assert main(["build-tiny-encoder", str(model), "--hidden", "16", "--layers", "1", "--heads", "2"]) == 0
    assert main(["check-model", str(model), "--window", "515"]) == 0
    out = capsys.readouterr().out
    assert "dnabert (dnabert-6mer tokens)" in out and "windows up to 515 bp fit" in out
    assert main(["check-model", str(model), "--window", "516"]) == 1
    err = capsys.readouterr().err
    assert "takes at most 512 positions" in err and "windows.size to at most 515" in err


def test_every_family_builds_and_loads_from_the_command_line(tmp_path, capsys):
    fasta = str(Path(__file__).resolve().parents[1] / "data" / "lambda_phage_NC_001416.1.fa.gz")
    for family, shown in [("nucleotide_transformer", "nucleotide_transformer (nt-6mer tokens)"),
                          ("bpe", "hf_tokenizer (byte-pair tokens)"), ("per_base", "hf_tokenizer (per-base tokens)")]:
        model = tmp_path / family
        assert main(["build-tiny-encoder", str(model), "--family", family, "--hidden", "16", "--layers", "1",
                     "--heads", "2", "--train-fasta", fasta]) == 0
        assert main(["check-model", str(model), "--window", "400", "--load"]) == 0
        out = capsys.readouterr().out
        assert shown in out and "content tokens for a 400 bp window" in out

    import pyarrow as pa

    from dnalm.io import write_table_atomic

    path = tmp_path / "t.parquet"
    write_table_atomic(pa.table({"x": [1]}), path, {"stage": "test", "window_size": 512})
    assert main(["provenance", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["window_size"] == 512 and "dnalm_version" in shown


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    assert main(["check-model", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "model directory does not exist" in err and "Traceback" not in err

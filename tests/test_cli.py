"""The dnalm command: provenance, model checks, the tiny encoder."""

from __future__ import annotations

import json

from dnalm.cli import main


def test_build_check_and_provenance(tmp_path, capsys):
    model = tmp_path / "tiny"
    assert main(["build-tiny-encoder", str(model), "--hidden", "16", "--layers", "1", "--heads", "2"]) == 0
    assert main(["check-model", str(model), "--window", "515"]) == 0
    assert "DNABERT-6" in capsys.readouterr().out
    assert main(["check-model", str(model), "--window", "516"]) == 1
    err = capsys.readouterr().err
    assert "takes at most 512 positions" in err and "windows.size to at most 515" in err

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

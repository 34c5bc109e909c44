"""The hub families that ship their own code (DNABERT-2, Nucleotide Transformer v2,
GENA-LM, HyenaDNA) through every rule that loads an encoder, by configuration alone.

Each model folder is written in its hub repo's own layout: config.json in the published
form (`auto_map` as published: NT v2's has no AutoModel, DNABERT-2's current one has no
model_type), weights under the published names (tied tensors shared), the published
tokenizer files (HyenaDNA's is custom code that pads on the left), and in place of every
.py file the hub ships, a stand-in that raises when executed: a run that finishes proves
that no code from the folder ran. The native ports are checked against the published
code itself outside this suite (the README's table of the published models gives the figures).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers.workflow import Workdir
from safetensors import safe_open

from dnalm.encoders.native import FORMS, dnabert2, gena_lm, hyenadna, nt_v2

pytestmark = pytest.mark.workflow

ORCHIDS = {"mode": "fasta", "sequences": "data/orchid_its.fa.gz", "labels": "data/orchid_its_labels.tsv"}
BUILDERS = {"dnabert2": dnabert2, "nt_v2": nt_v2, "gena_lm": gena_lm, "hyenadna": hyenadna}
HAS_LM_HEAD = {form.name: form.has_lm_head for form in FORMS}
STAND_IN = "the model's own code was executed"


def _overlay(folder, port: str) -> dict:
    return {
        "input": ORCHIDS,
        "windows": {"per_shard": 512},  # one embedding job: these tests are about the model, not sharding
        # GENA-LM's model card says trust_remote_code: a user who sets it gets the same native path.
        "encoder": {"source": "pretrained", "model": str(folder), "trust_remote_code": port == "gena_lm"},
        "heads": {"train": ["mean"]},
        # LoRA (through peft, on a plain torch module) for one of them; full fine-tuning for the rest.
        "finetune": {"activate": True, "epochs": 1, "max_windows": 1, "gradient_checkpointing": True,
                     "lora": {"r": 4 if port == "hyenadna" else 0}},
        "pretrain": {"activate": HAS_LM_HEAD[port], "fasta": ["data/lambda_phage_NC_001416.1.fa.gz"],
                     "windows_per_epoch": 32, "batch_size": 8},
    }


@pytest.fixture(scope="module")
def published_runs(tmp_path_factory) -> dict[str, tuple[Workdir, object, object]]:
    runs = {}
    for port, module in BUILDERS.items():
        root = tmp_path_factory.mktemp(port)
        # 512 positions, as the hub's BERTs; one token per base needs 513 for a 512-bp window.
        folder = module.build_tiny_hub_folder(root / "hub_model", positions=1024 if port == "hyenadna" else 512)
        workdir = Workdir(root / "wd")
        cfg = workdir.write_config(f"{port}.yaml", _overlay(folder, port))
        runs[port] = (workdir, folder, workdir.snakemake(configs=[cfg]))
    return runs


def _keys(path) -> set[str]:
    with safe_open(str(path), "pt") as fh:
        return set(fh.keys())


@pytest.mark.parametrize("port", list(BUILDERS))
def test_published_folder_runs_every_rule_natively(published_runs, port):
    workdir, folder, run = published_runs[port]
    assert "dnalm finished" in run.output and STAND_IN not in run.output
    out = workdir.path("results")
    table = pd.read_csv(out / "classify/finetuned/predictions.tsv", sep="\t")
    assert len(table) == 94 and table["pred_label"].notna().all()
    rules = ["embed_shard/00000.log", "finetune/finetune.log"] + (["pretrain/pretrain.log"] if HAS_LM_HEAD[port]
                                                                   else [])
    for log in rules:
        text = workdir.path(f"logs/{log}").read_text()
        assert f"model: native {port} implementation" in text, log
    if port == "hyenadna":
        assert "LoRA rank 4" in workdir.path("logs/finetune/finetune.log").read_text()
    if port == "gena_lm":
        assert "trust_remote_code is set, but no code from the folder runs" in workdir.path(
            "logs/finetune/finetune.log").read_text()


@pytest.mark.parametrize("port", list(BUILDERS))
def test_written_encoders_keep_the_hub_layout(published_runs, port):
    """What finetune (and pretrain) write is a folder of the published form: the same
    config.json and auto_map, every published weight name, the shipped code files."""
    workdir, folder, _ = published_runs[port]
    written = ["finetune/encoder"] + (["pretrain/encoder"] if HAS_LM_HEAD[port] else [])
    source_keys = _keys(next(folder.glob("*.safetensors")))
    lm_head = tuple(BUILDERS[port].MODEL.lm_head_prefixes)
    for name in written:
        encoder = workdir.path(f"results/{name}")
        assert json.loads((encoder / "config.json").read_text()) == json.loads((folder / "config.json").read_text())
        assert sorted(p.name for p in encoder.glob("*.py")) == sorted(p.name for p in folder.glob("*.py"))
        keys = _keys(encoder / "model.safetensors")
        expected = source_keys if name == "pretrain/encoder" else {k for k in source_keys
                                                                    if not k.startswith(lm_head)}
        assert expected <= keys, sorted(expected - keys)[:5]


def test_a_model_without_a_masked_lm_head_is_refused_for_pretraining_before_any_job(published_runs):
    workdir, folder, _ = published_runs["hyenadna"]
    cfg = workdir.write_config("pretrain.yaml", {**_overlay(folder, "hyenadna"),
                                                 "pretrain": {"activate": True,
                                                              "fasta": ["data/lambda_phage_NC_001416.1.fa.gz"]},
                                                 "outdir": "results_pretrain"})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0
    assert "not a masked language model" in run.output and "pretrain.activate: false" in run.output


def test_caduceus_without_mamba_ssm_is_refused_before_any_job(workdir, tmp_path):
    folder = tmp_path / "caduceus"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "caduceus", "d_model": 32, "n_layer": 2, "vocab_size": 16,
        "auto_map": {"AutoConfig": "configuration_caduceus.CaduceusConfig",
                     "AutoModel": "modeling_caduceus.Caduceus",
                     "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM"}}))
    (folder / "modeling_caduceus.py").write_text(f'raise RuntimeError("{STAND_IN}")\n')
    cfg = workdir.write_config("caduceus.yaml", {
        "input": ORCHIDS, "encoder": {"source": "pretrained", "model": str(folder), "trust_remote_code": True}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0 and "mamba_ssm" in run.output and "pip install mamba-ssm" in run.output
    assert STAND_IN not in run.output

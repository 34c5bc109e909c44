"""The configuration contract: a description and a default for every key, the
demo config valid as is, every key documented in config/README.md."""

from __future__ import annotations

import copy
import re

import yaml
from snakemake.utils import validate

from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
# The demo's departures from the defaults: CPU-sized fine-tuning.
DEMO_SETTINGS = ["finetune.epochs", "finetune.max_windows", "finetune.gradient_checkpointing"]


def walk(schema: dict, prefix: str = ""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{prefix}{key}", sub
        if sub.get("type") == "object":
            yield from walk(sub, f"{prefix}{key}.")


def test_every_key_has_description_and_default():
    keys = list(walk(SCHEMA))
    assert len(keys) > 30
    missing = [k for k, sub in keys if "description" not in sub or "default" not in sub]
    assert not missing, f"schema keys without description/default: {missing}"


def test_demo_config_is_valid_and_defaults_fill_an_empty_config():
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(copy.deepcopy(demo), str(REPO / "config" / "schema.yaml"))
    empty: dict = {}
    validate(empty, str(REPO / "config" / "schema.yaml"))  # fills defaults
    assert empty["windows"]["size"] == 512 and empty["heads"]["training"]["seed"] == 0
    # The defaults are the demo: every value config.yaml sets is the schema's default, but
    # for the few that fit fine-tuning into minutes on 2 CPU cores, each marked in the file.
    def differences(given, defaults, prefix=""):
        for key, value in given.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                yield from differences(value, defaults[key], name)
            elif defaults[key] != value:
                yield name

    assert sorted(differences(demo, empty)) == sorted(DEMO_SETTINGS)
    text = (REPO / "config" / "config.yaml").read_text()
    for key in DEMO_SETTINGS:
        assert re.search(rf"^\s*{key.split('.')[-1]}: .*# demo", text, re.M), f"{key} is not marked as a demo setting"


def test_every_key_is_documented():
    text = (REPO / "config" / "README.md").read_text()
    undocumented = [k for k, sub in walk(SCHEMA) if sub.get("type") != "object" and f"`{k}`" not in text]
    assert not undocumented, undocumented


def test_package_defaults_are_the_schema_defaults():
    """The settings dataclasses (what a library user gets) and the schema (what a workflow
    user gets) must not drift apart."""
    from dataclasses import fields

    from dnalm.settings import FinetuneSettings, PretrainSettings, TrainSettings

    config: dict = {}
    validate(config, str(REPO / "config" / "schema.yaml"))
    heads = config["heads"]
    shared = {**heads["hierarchical"], "pooling": heads["pooling"], "max_n_fraction": heads["max_n_fraction"],
              **{k: heads["training"][k] for k in ("val_fraction", "class_weights", "seed")}}
    finetune = {k: v for k, v in config["finetune"].items() if k not in ("activate", "lora")}
    finetune.update({f"lora_{k}": v for k, v in config["finetune"]["lora"].items()})
    for cls, expected in [(TrainSettings, {**heads["training"], **shared}),
                          (FinetuneSettings, {**shared, **finetune}),
                          (PretrainSettings, config["pretrain"])]:
        for f in fields(cls):
            assert getattr(cls(), f.name) == expected[f.name], (cls.__name__, f.name)

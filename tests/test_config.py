"""The configuration contract: a description and a default for every key, the
demo config valid as is, every key documented in config/README.md."""

from __future__ import annotations

import copy
import re

import yaml
from helpers.workflow import REPO
from snakemake.utils import validate

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


def test_defaults_fill_a_config_as_the_schema_validation_does():
    """settings.complete (the package's defaults) fills exactly what Snakemake's validation fills."""
    from dnalm.settings import complete

    for given in ({}, yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                  {"input": {"mode": "tiles", "tiles": {"length": 5000}}, "heads": {"train": ["mean"]}}):
        validated = copy.deepcopy(given)
        validate(validated, str(REPO / "config" / "schema.yaml"))
        assert complete(given) == validated


def _leaves(config: dict, prefix=()):
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def test_every_config_key_reaches_the_settings():
    """from_config reads every key of the schema: changing any one changes the settings."""
    from dataclasses import asdict

    from dnalm.settings import complete, from_config

    base = asdict(from_config({}))
    for path in _leaves(complete({})):
        config = complete({})
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = ["changed"] if isinstance(node[path[-1]], list) else "changed"
        assert asdict(from_config(config)) != base, ".".join(path)


def test_settings_defaults_are_the_schema_defaults():
    """The settings classes take their field defaults from the schema, so a library user gets
    what a workflow user gets."""
    from dnalm.settings import (
        ClassifySettings,
        EncoderSpec,
        FinetuneSettings,
        InputSettings,
        PretrainSettings,
        TinyEncoder,
        TrainSettings,
        WindowSpec,
        from_config,
    )

    run = from_config({})
    assert (run.input, run.windows, run.encoder.spec, run.encoder.tiny, run.train, run.finetune, run.pretrain,
            run.classify) == (InputSettings(), WindowSpec(), EncoderSpec(), TinyEncoder(), TrainSettings(),
                              FinetuneSettings(), PretrainSettings(), ClassifySettings())


def test_unknown_keys_are_refused():
    import pytest

    from dnalm.errors import InputError
    from dnalm.settings import from_config

    with pytest.raises(InputError, match="unknown config key.*heads.trainig"):
        from_config({"heads": {"trainig": {}}})

"""Conda envs and workflow hygiene, checked statically (conda cannot run here).

The envs in envs/*.yaml are what `--sdm conda` builds on a cluster; requirements.txt
is what CI and `make demo` install with pip. These tests keep the two in step,
keep every rule pointed at an env that exists and holds what its script imports,
and run the two linters the Makefile's `lint` target runs.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from helpers.imports import PACKAGE, imports_of

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]

CHANNELS = ["conda-forge", "bioconda", "nodefaults"]
# name=version, one "=", an exact dotted version: no ranges, wildcards, builds or bare names.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)=(?P<version>\d+(?:\.\d+)+)$")
# Conda package names that differ from the pip distribution name (after normalisation).
CONDA_TO_PIP = {"pytorch": "torch"}


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash (huggingface_hub == huggingface-hub)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_name(conda_name: str) -> str:
    return CONDA_TO_PIP.get(normalise(conda_name), normalise(conda_name))


def env_pins(path: Path) -> dict[str, str | None]:
    """pip-normalised name -> pinned version (None where not pinned) of an env's dependencies."""
    pins = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, str):
            m = PIN.match(dep)
            name = m["name"] if m else re.split(r"[\s=<>!~]", dep, maxsplit=1)[0]
            pins[pip_name(name)] = m["version"] if m else None
    return pins


# ------------------------------------------------------------------ rules


@dataclass
class Rule:
    name: str
    file: Path
    directives: dict[str, str] = field(default_factory=dict)

    def path_of(self, directive: str) -> Path | None:
        """The file a conda:/script: directive names, relative to the rule file."""
        text = self.directives.get(directive)
        if text is None:
            return None
        literals = re.findall(r"""["']([^"']+)["']""", text)
        assert len(literals) == 1, f"rule {self.name}: {directive}: expected one path string, got {text!r}"
        return (self.file.parent / literals[0]).resolve()


def parse_rules() -> list[Rule]:
    """Rules and their directives from the snakefmt-formatted Snakefile and rules/*.smk.

    A rule starts at `rule NAME:`, unindented or inside an `if` block (a rule the run
    defines only when it needs it); its directives are the lines indented four spaces
    deeper (`    NAME:`), each running until the next one. snakefmt --check (tested below)
    keeps the files in this shape, and the rule names are checked against
    `snakemake --list-rules`, so a rule this misses fails a test.
    """
    rules = []
    for path in RULE_FILES:
        rule = directive = None
        indent = ""
        for line in path.read_text().splitlines():
            stripped = line.lstrip()
            if stripped.startswith("#") and len(line) - len(stripped) <= len(indent) + 4:
                continue  # a comment between rules or directives
            if m := re.match(r"^( *)rule (\w+):", line):
                indent = m.group(1)
                rule, directive = Rule(m.group(2), path), None
                rules.append(rule)
            elif line.strip() and not line.startswith(indent + " "):
                rule = directive = None  # a statement at the rule's level or above ends it
            elif rule is not None and (m := re.match(rf"^{indent} {{4}}(\w+):(.*)$", line)):
                directive = m.group(1)
                rule.directives[directive] = m.group(2).strip()
            elif rule is not None and directive is not None and line.strip():
                rule.directives[directive] += "\n" + line.strip()
    return rules


RULES = parse_rules()
JOB_RULES = [r for r in RULES if "output" in r.directives]  # not the `all` target


def test_rule_parser_sees_every_rule(tmp_path):
    # A rule the run does not need may be left undefined (classify_kmer_shards, the variant,
    # mutagenesis and annotation rules): list them
    # for a configuration that needs every rule.
    every_rule = tmp_path / "every_rule.yaml"
    mutate = tmp_path / "mutate.bed"
    mutate.write_text("NC_000913.3\t1000\t1010\n")
    every_rule.write_text("classify:\n  kmer_baseline: true\nvariants:\n  vcf: data/ecoli_k12_variants.vcf.gz\n"
                          f"mutagenesis:\n  regions: {mutate}\n"
                          "annotation:\n  features: data/ecoli_k12_mg1655_NC_000913.3.features.bed.gz\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--configfile", "config/config.yaml",
                           str(every_rule)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
    assert sorted(r.name for r in RULES) == sorted(listed)
    assert {r.name for r in JOB_RULES} == listed - {"all"}


# ------------------------------------------------------------- env files


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_file_is_pinned(env):
    spec = yaml.safe_load(env.read_text())
    assert isinstance(spec, dict), f"{env.name}: not a YAML mapping"
    assert spec.get("channels") == CHANNELS, f"{env.name}: channels must be exactly {CHANNELS}"
    deps = spec.get("dependencies")
    assert isinstance(deps, list) and deps, f"{env.name}: no dependencies list"
    unpinned = [d for d in deps if not (isinstance(d, str) and PIN.match(d))]
    assert not unpinned, f"{env.name}: not pinned as name=exact.version: {unpinned}"
    names = [PIN.match(d)["name"] for d in deps]
    assert len(names) == len(set(names)), f"{env.name}: a package is listed twice: {names}"
    python = [PIN.match(d)["version"] for d in deps if PIN.match(d)["name"] == "python"]
    assert len(python) == 1 and re.fullmatch(r"3\.11(\.\d+)?", python[0]), \
        f"{env.name}: python must be pinned to 3.11, got {python}"


def test_every_conda_directive_points_at_an_env_and_every_env_is_used():
    missing_directive = [r.name for r in JOB_RULES if "conda" not in r.directives]
    assert not missing_directive, f"rules without a conda: directive: {missing_directive}"
    used = {}
    for rule in JOB_RULES:
        env = rule.path_of("conda")
        assert env.is_file(), f"rule {rule.name} ({rule.file.name}): conda env {env} does not exist"
        used.setdefault(env, []).append(rule.name)
    unused = [p.name for p in ENVS if p.resolve() not in used]
    assert not unused, f"env files no rule uses: {unused}"


def read_requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)$", line)
            assert m, f"requirements.txt: {line!r} is not pinned with =="
            pins[normalise(m.group(1))] = m.group(2)
    return pins


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_match_requirements(env):
    """CI tests with requirements.txt, so a conda env may only hold what CI tested, at that version."""
    requirements = read_requirements()
    pins = env_pins(env)
    pins.pop("python", None)
    not_in_ci = sorted(set(pins) - set(requirements))
    assert not not_in_ci, f"{env.name}: {not_in_ci} are not in requirements.txt, so CI never tests them"
    differ = {name: (version, requirements[name]) for name, version in pins.items() if requirements[name] != version}
    assert not differ, f"{env.name} vs requirements.txt (conda, pip): {differ}"


# ------------------------------------------------ imports vs env contents


def needed_modules(script: Path) -> dict[str, str]:
    """Third-party module -> the file that imports it, for a script and the dnalm modules it reaches."""
    needed: dict[str, str] = {}
    todo, seen = [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        third_party, internal = imports_of(path)
        for module in third_party:
            needed.setdefault(module, str(path.relative_to(REPO)))
        todo += sorted(internal)
    return needed


DISTRIBUTIONS = importlib.metadata.packages_distributions()  # import name -> pip names, from the venv


def distribution_of(module: str) -> str:
    dists = DISTRIBUTIONS.get(module)
    assert dists, f"cannot tell which package provides module {module!r} (is it installed in the venv?)"
    return normalise(dists[0])


def missing_from_env(needed: dict[str, str], env: Path) -> list[str]:
    pins = env_pins(env)
    return sorted(f"{distribution_of(m)} (import {m} in {where})"
                  for m, where in needed.items() if distribution_of(m) not in pins)


def test_scan_finds_known_imports():
    """The import scan itself: it must see lazy imports and follow dnalm's own modules."""
    embed = needed_modules(REPO / "scripts" / "embed_shard.py")
    # torch is lazy there; safetensors is reached through the encoders subpackage (native ports)
    assert {"torch", "transformers", "safetensors", "numpy", "pyarrow", "tqdm"} <= set(embed)
    windows = needed_modules(REPO / "scripts" / "make_windows.py")
    assert {"numpy", "pandas", "pyarrow", "pysam"} <= set(windows)
    assert "torch" not in windows  # the cpu env's rules never reach torch


def test_every_rule_env_holds_what_its_script_imports():
    problems = []
    for rule in JOB_RULES:
        script = rule.path_of("script")
        if script is None:
            continue
        assert script.is_file(), f"rule {rule.name}: script {script} does not exist"
        missing = missing_from_env(needed_modules(script), rule.path_of("conda"))
        if missing:
            problems.append(f"rule {rule.name} ({rule.path_of('conda').name}) lacks: {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_torch_env_holds_every_package_dependency():
    needed: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in imports_of(path)[0]:
            needed.setdefault(module, str(path.relative_to(REPO)))
    missing = missing_from_env(needed, REPO / "envs" / "torch.yaml")
    assert not missing, f"envs/torch.yaml lacks: {', '.join(missing)}"


def test_cpu_env_serves_extract_and_windows():
    rules = {r.name: r for r in JOB_RULES}
    for name in ("extract_regions", "make_windows"):
        assert rules[name].path_of("conda") == (REPO / "envs" / "cpu.yaml").resolve(), name
        missing = missing_from_env(needed_modules(rules[name].path_of("script")), REPO / "envs" / "cpu.yaml")
        assert not missing, f"envs/cpu.yaml lacks, for {name}: {', '.join(missing)}"


# ---------------------------------------------------------------- linters


def test_every_job_rule_has_a_log():
    no_log = [r.name for r in JOB_RULES if "log" not in r.directives]
    assert not no_log, f"rules without log: {no_log}"


def test_snakemake_lint_passes():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in output, output


def test_snakefmt_check_passes():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    proc = subprocess.run([str(snakefmt), "--check", "Snakefile", "rules/"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------- the package where jobs run


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_every_env_installs_the_package_from_the_checkout(env):
    """Snakemake runs <env>.post-deploy.sh in each env it creates: the jobs import dnalm from there."""
    script = env.with_name(f"{env.stem}.post-deploy.sh")
    assert script.is_file(), f"{env.name} has no post-deploy script, so its jobs could not import dnalm"
    assert 'pip install --no-deps --editable "${DNALM_CHECKOUT' in script.read_text()
    assert "os.environ.update(DNALM_CHECKOUT=workflow.basedir)" in (REPO / "rules" / "common.smk").read_text()


def test_post_deploy_installs_this_checkout_into_a_fresh_environment(tmp_path):
    """What Snakemake does after creating a conda env, done here in a fresh venv (conda cannot
    run here): the script installs the checkout, and the env then imports dnalm from it."""
    import os
    import venv

    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    environ = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}", "DNALM_CHECKOUT": str(REPO)}
    environ.pop("PYTHONPATH", None)
    script = REPO / "envs" / "torch.post-deploy.sh"
    proc = subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = subprocess.run([str(env / "bin" / "python"), "-c", "import dnalm; print(dnalm.__file__)"],
                           env=environ, capture_output=True, text=True, cwd=tmp_path)
    assert where.stdout.strip() == str(PACKAGE / "__init__.py"), where.stderr
    environ.pop("DNALM_CHECKOUT")
    unset = subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True)
    assert unset.returncode != 0 and "DNALM_CHECKOUT" in unset.stderr


def test_a_package_from_another_checkout_is_refused(tmp_path):
    """The DAG and every job refuse a dnalm that is not this checkout's: other code than the
    rules were written for would run, silently."""
    import os
    import shutil

    from dnalm.errors import InputError
    from dnalm.workflow.jobs import check_package_origin

    check_package_origin(REPO)
    with pytest.raises(InputError, match="not from the workflow's own checkout"):
        check_package_origin(tmp_path)
    copy = tmp_path / "other" / "src"
    shutil.copytree(PACKAGE, copy / "dnalm")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(copy)}, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"imports dnalm from {copy / 'dnalm'}" in output and "pip install --no-deps -e" in output

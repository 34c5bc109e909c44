"""`snakemake --report` renders one self-contained HTML file holding the run's tables and plots.

Snakemake 9 embeds each report() output in a `<script id="results">var results = {...};`
block: name, rendered caption (HTML), mime type and the file itself as a base64 data URI.
These tests read that block back and check every table, figure and caption.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from helpers.workflow import REPO, deep_merge
from PIL import Image, ImageChops

pytestmark = pytest.mark.workflow

# report() output -> (caption file, category), as rules/report.smk declares them
EXPECTED = {
    "metrics.tsv": ("metrics.rst", "Metrics"),
    "confusion.png": ("confusion.rst", "Metrics"),
    "roc_pr.png": ("roc_pr.rst", "Metrics"),
    "window_counts.png": ("windows.rst", "Windows"),
    "provenance.tsv": ("provenance.rst", "Provenance"),
}
HEADS = ["hierarchical", "mean"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def embedded_var(page: str, name: str):
    """The JSON value of `var NAME = ...;` in the report's data script `<script id="ID">`."""
    script_id = {"workflow_desc": "workflow-desc"}.get(name, name)
    match = re.search(rf'<script id="{script_id}">\s*var {name} = ', page)
    assert match, f"report has no <script id={script_id!r}> with `var {name}`"
    value, _ = json.JSONDecoder().raw_decode(page, match.end())
    return value


def decode_data_uri(uri: str) -> bytes:
    header, _, data = uri.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header
    return base64.b64decode(data, validate=True)


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment (or of RST prose), whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


@pytest.fixture(scope="module")
def report(trained_bed_run, tmp_path_factory):
    """The report of the shared BED run, written next to it, with the run's merged config."""
    wd, cfg, _ = trained_bed_run
    path = tmp_path_factory.mktemp("report") / "report.html"
    run = wd.snakemake("--report", str(path), configs=[cfg])
    assert "Report created" in run.output, run.output
    config = deep_merge(yaml.safe_load(wd.path("config/config.yaml").read_text()),
                        yaml.safe_load(cfg.read_text()))
    page = path.read_text()
    results = {entry["name"]: entry for entry in embedded_var(page, "results").values()}
    return SimpleNamespace(wd=wd, path=path, page=page, results=results, config=config)


def expected_caption(rst_name: str, config: dict) -> str:
    """A caption as Snakemake renders it: the RST is a Jinja template over `snakemake.config`."""
    template = jinja2.Template((REPO / "report" / rst_name).read_text())
    return text_of(template.render(snakemake=SimpleNamespace(config=config)))


def test_report_holds_every_result_with_its_caption_and_category(report):
    assert sorted(report.results) == sorted(EXPECTED)
    for name, (rst, category) in EXPECTED.items():
        caption = report.results[name]["caption"]
        assert text_of(caption) == expected_caption(rst, report.config), name
    assert "{{" not in json.dumps([r["caption"] for r in report.results.values()])  # templates rendered
    assert "512 bp windows every 256 bp" in text_of(report.results["window_counts.png"]["caption"])
    categories = embedded_var(report.page, "categories")
    placed = {Path(p).name: cat for cat, subs in categories.items() for paths in subs.values() for p in paths}
    assert placed == {name: category for name, (_, category) in EXPECTED.items()}
    description = text_of(embedded_var(report.page, "workflow_desc"))
    assert description == expected_caption("workflow.rst", report.config)


def test_embedded_files_are_the_run_outputs(report):
    for name, entry in report.results.items():
        on_disk = report.wd.path(f"results/report/{name}").read_bytes()
        assert decode_data_uri(entry["data_uri"]) == on_disk, f"{name}: embedded copy differs from the output"


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.endswith(".png")])
def test_embedded_png_is_a_real_image(report, name):
    entry = report.results[name]
    assert entry["mime_type"] == "image/png"
    data = decode_data_uri(entry["data_uri"])
    assert data[:8] == PNG_MAGIC and len(data) > 1024, f"{name}: {len(data)} bytes"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and min(image.size) > 100, image.size
        darkest, lightest = image.convert("L").getextrema()
        assert lightest - darkest > 100, f"{name}: a blank image"


def test_metrics_table_has_both_heads_test_rows(report):
    entry = report.results["metrics.tsv"]
    assert entry["mime_type"] == "text/tab-separated-values"
    table = pd.read_csv(io.BytesIO(decode_data_uri(entry["data_uri"])), sep="\t")
    assert list(table.columns[:7]) == ["head", "split", "n", "accuracy", "macro_f1", "mcc", "auroc"]
    baselines = json.loads(report.wd.path("results/baselines/metrics.json").read_text())
    names = {"baseline: 6-mer frequencies, logistic regression": "kmer6_logreg",
             "baseline: 6-mer frequencies + language-model vectors, logistic regression": "kmer6_lm_logreg",
             "baseline: GC content, logistic regression": "gc_logreg"}
    assert sorted(zip(table["head"], table["split"])) == sorted((h, s) for h in [*HEADS, *names]
                                                                for s in ("test", "val"))
    for name, key in names.items():  # what the language model is measured against, on the same splits
        row = table[(table["head"] == name) & (table["split"] == "test")].iloc[0]
        assert row["n"] == baselines[key]["test"]["n"] == 36
        assert row["accuracy"] == pytest.approx(baselines[key]["test"]["accuracy"], abs=5e-5)
    for head in HEADS:
        metrics = json.loads(report.wd.path(f"results/heads/{head}/metrics.json").read_text())
        row = table[(table["head"] == head) & (table["split"] == "test")].iloc[0]
        assert row["n"] == metrics["test"]["n"] == 36  # 18 regions x 2 classes in the test split
        for key in ("accuracy", "macro_f1", "mcc", "auroc"):
            assert row[key] == pytest.approx(metrics["test"][key], abs=5e-5), (head, key)


def test_provenance_table_describes_the_run(report):
    entry = report.results["provenance.tsv"]
    table = pd.read_csv(io.BytesIO(decode_data_uri(entry["data_uri"])), sep="\t", dtype=str)
    assert list(table.columns) == ["file", "key", "value"]
    assert set(table["file"]) == {"embeddings", *(f"predictions ({h})" for h in HEADS)}
    embeddings = dict(table[table["file"] == "embeddings"][["key", "value"]].values)
    windows = report.config["windows"]
    assert embeddings["window_size"] == str(windows["size"])  # the numbers the caption shows
    assert embeddings["window_stride"] == str(windows["stride"])
    assert embeddings["tokenizer"] == "dnabert-6mer"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", embeddings["model_sha256"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", embeddings["reference_fai_sha256"])


def test_window_counts_figure_shows_this_run(report, tmp_path):
    """The figure is the one dnalm draws from this run's sequences table (72 regions x 3 windows).

    Its title reads "N sequences, M windows"; rather than OCR, the figure is redrawn from
    the run's sequences.parquet and compared pixel for pixel.
    """
    from dnalm.outputs.report import plot_window_counts

    sequences = report.wd.path("results/windows/sequences.parquet")
    counts = pq.read_table(sequences, columns=["n_windows"]).column("n_windows").to_pylist()
    regions = [line for line in report.wd.path("regions.bed").read_text().splitlines() if line]
    assert len(counts) == len(regions) == 72 and sum(counts) == 216
    redrawn = tmp_path / "window_counts.png"
    plot_window_counts(str(sequences), str(redrawn))
    embedded = decode_data_uri(report.results["window_counts.png"]["data_uri"])
    with Image.open(io.BytesIO(embedded)) as shown, Image.open(redrawn) as expected:
        assert shown.size == expected.size
        assert ImageChops.difference(shown.convert("RGB"), expected.convert("RGB")).getbbox() is None


def test_report_scripts_compile(report, tmp_path):
    """Every inline script parses as JavaScript (node compiles each without running it)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: inline scripts not compiled (the parse-based tests still ran)")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", report.page, re.S)
    assert len(scripts) > 10
    (tmp_path / "scripts.json").write_text(json.dumps(scripts))
    check = ("const vm = require('vm'); const s = JSON.parse(require('fs').readFileSync(process.argv[1]));"
             "s.forEach((code, i) => { try { new vm.Script(code); } catch (e) {"
             " console.error(`script ${i}: ${e}`); process.exitCode = 1; } });")
    proc = subprocess.run([node, "-e", check, str(tmp_path / "scripts.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_report_renders_in_headless_chromium(report, tmp_path):
    """The report's app renders its menu (one entry per category) with no uncaught script error."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed: browser rendering not checked "
                    "(the parse-based report tests above are the real check)")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", "--dump-dom", report.path.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines() if "Uncaught" in line]
    assert not errors, "\n".join(errors)
    dom = re.sub(r"<script[^>]*>.*?</script>", "", proc.stdout, flags=re.S)
    app = dom.split('id="app"', 1)
    assert len(app) == 2, "no #app element in the DOM"
    rendered = text_of(app[1])
    for word in ("Workflow", "Statistics", *sorted({category for _, category in EXPECTED.values()})):
        assert word in rendered, f"{word!r} not rendered in the report's menu"

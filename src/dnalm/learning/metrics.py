"""How metrics and baselines are named where a run prints them, for every task: a head's
test line, the baselines' names, the leak check, the spread over seeds and which model
validation picks. Each task's own metrics are its module's (`learning.tasks`)."""

from __future__ import annotations

from .tasks import task_for


def _task(name: str | None):
    return task_for(name or "classification")


def task_name(metrics: dict) -> str:
    """The task of a metrics.json (a head's or the baselines'): classification where unsaid."""
    task = metrics.get("task") or "classification"
    return task["name"] if isinstance(task, dict) else task


def summary_line(name: str, test: dict, task: str = "classification") -> str:
    """One line of test metrics, as the run prints it."""
    if not test.get("n"):
        return f"{name}: no test sequence, so no test metrics (mark sequences `test` in the split column)"
    return _task(task).summary_line(name, test)


BASELINE_SUFFIXES = ("_logreg", "_ridge")


def baseline_label(key: str, task: str = "classification") -> str:
    """How a baseline is named in printed lines and the report."""
    suffix = next((s for s in BASELINE_SUFFIXES if key.endswith(s)), "")
    method = _task(task).baseline_method if suffix else ""
    stem = key.removesuffix(suffix)
    if stem.startswith("kmer") and stem.endswith("_lm"):
        return f"{stem.removeprefix('kmer').removesuffix('_lm')}-mer frequencies + language-model vectors, {method}"
    if stem.startswith("kmer"):
        return f"{stem.removeprefix('kmer')}-mer frequencies, {method}"
    if stem == "gc":
        return f"GC content, {method}"
    return key


def baseline_keys(metrics: dict) -> list[str]:
    """The baselines in a baselines/metrics.json: k-mer frequencies, then with the language model, then GC."""
    return sorted((key for key in metrics if key.endswith(BASELINE_SUFFIXES)),
                  key=lambda k: (k.startswith("gc"), "_lm_" in k, k))


def leak_line(leak: dict) -> str:
    """The leak check (`learning.baselines.shared_windows`) in one line."""
    said = [f"{split} {leak[split]['shared_with_train']} of {leak[split]['windows']}" for split in ("val", "test")
            if leak.get(split, {}).get("windows")]
    shared = sum(found["shared_with_train"] for found in leak.values())
    head = "leak check: windows with the bases of a training window (either strand)"
    return f"{head}: {', '.join(said) or 'no val/test window'}" + ("" if shared else " (none)")


def choice_line(heads: dict[str, dict], baselines: dict) -> str:
    """Which model to use, from validation only (the task's measure: MCC then accuracy for
    classes, R² for values, macro AUPRC for label sets), and what it gains on the k-mer
    baseline there; the chosen model's test figure follows for reference."""
    task = task_name(baselines)
    key, shown = _task(task).choice
    candidates = {f"{head} head": metrics for head, metrics in heads.items()}
    candidates.update({baseline_label(k, task): baselines[k] for k in baseline_keys(baselines)})
    scored = {name: m["val"] for name, m in candidates.items()
              if m.get("val", {}).get("n") and m["val"].get(key) is not None}
    if not scored:
        return "model choice: no validation sequence, so validation cannot choose a model"
    best = max(scored, key=lambda name: (scored[name][key], scored[name].get("accuracy", 0)))
    kmer = next((baseline_label(k, task) for k in baseline_keys(baselines)
                 if k.startswith("kmer") and "_lm_" not in k), None)
    gain = ""
    if kmer and kmer in scored and best != kmer:
        diff = scored[best][key] - scored[kmer][key]
        gain = f"; on validation it {'beats' if diff > 0 else 'ties'} the {kmer.split(',')[0]} baseline by {shown} " \
               f"{diff:+.3f}"
    test = candidates[best].get("test", {})
    tested = f" (test {shown} {test[key]:.3f})" if test.get("n") and test.get(key) is not None else ""
    return f"model choice (validation {shown} {scored[best][key]:.3f}): {best}{gain}{tested}"


def spread_line(spread: dict, task: str = "classification") -> str:
    """A head's spread over seeds (`learning.toolkit.seed_spread`) in one line: test, else val."""
    split = "test" if spread.get("test") else "val"
    shown = _task(task).spread_shown
    said = [f"{key} {v['mean']:.3f} ± {v['sd']:.3f} ({v['min']:.3f}-{v['max']:.3f})"
            for key, v in spread.get(split, {}).items() if key in shown]
    return f"over {len(spread['seeds'])} seeds, {split}: {', '.join(said)}"

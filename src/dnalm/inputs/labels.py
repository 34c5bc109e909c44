"""Labels and splits as users write them: the split vocabulary, the labels table of a
FASTA input, and the rules every label obeys wherever it is read (a BED column, a labels
table, a trained head's class names)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import open_text

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_MISSING = {"", ".", "na", "nan", "none", "null"}
# C0 controls (tab, LF, CR, ...), DEL, C1 controls (NEL, ...) and the Unicode line and
# paragraph separators: each breaks a line- or tab-separated format, or a reader of one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def empty_or_none(value: str) -> str | None:
    """A label or split cell: None where it says nothing ('', '.', NA, none, ...)."""
    return None if value.strip().lower() in _MISSING else value.strip()


def normalise_split(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    if key in _MISSING:
        return None
    if key not in _SPLIT_ALIASES:
        raise InputError(
            f"unknown split {value!r}",
            path=where,
            fix="use train, val (or validation/dev) or test, or leave it empty",
        )
    return _SPLIT_ALIASES[key]


def _sniff_separator(path: Path) -> str:
    """Tab or comma, from the header line: what the file holds, whatever its name says."""
    with open_text(path) as fh:
        try:
            header = fh.readline()
        except UnicodeDecodeError:
            raise InputError("is not UTF-8 text", path=path,
                             fix="save the labels table as plain (UTF-8) TSV or CSV text") from None
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return "," if path.name.endswith((".csv", ".csv.gz")) else "\t"


def read_labels(path: str) -> pd.DataFrame:
    """A labels table (TSV or CSV, header: id, label[, split][, group]) indexed by id, with
    the file's line number of each row in column `line`. The separator is read from the
    header line, so a comma-separated file named .tsv is read as CSV."""
    p = Path(path)
    if not p.exists():
        raise InputError("labels table does not exist", path=p, fix="check input.labels in the config")
    sep = _sniff_separator(p) if p.stat().st_size else "\t"
    kind = "CSV" if sep == "," else "TSV"
    try:
        table = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read as a {kind} table ({str(err).strip()})", path=p,
                         fix="write a header line id<TAB>label<TAB>split (or id,label,split) and one row per "
                             "sequence") from None
    if "id" not in table.columns or "label" not in table.columns:
        raise InputError(
            f"read as {kind}, its first line has the columns {list(table.columns)}; the header needs 'id' and "
            "'label' (and optionally 'split')",
            path=p, fix="make the first line the header id<TAB>label<TAB>split (tabs or commas, one kind "
                        "throughout)")
    table["line"] = np.arange(len(table)) + 2
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        first = table.loc[table["id"] == dup.iloc[0], "line"].tolist()
        raise InputError(f"id {dup.iloc[0]!r} appears on lines {first[0]} and {first[1]}", path=p,
                         fix="keep one row per id")
    table["label"] = table["label"].map(empty_or_none)
    check_labels(table["label"].tolist(), p, lambda i: table["line"].iloc[i])
    if "split" in table.columns:
        table["split"] = [normalise_split(v, f"{p}:{line} (id {i})")
                          for i, v, line in zip(table["id"], table["split"], table["line"])]
    else:
        table["split"] = None
    table["group"] = table["group"].map(empty_or_none) if "group" in table.columns else None
    return table.set_index("id")[["label", "split", "group", "line"]]


def attach_labels_table(frame: pd.DataFrame, labels: str, fasta: str) -> int:
    """Fill frame's label/split from a labels table. Records without a row stay
    unlabelled (classified, not trained); their count is returned. An id that no
    record has is an error: it is most often a typo."""
    table = read_labels(labels)
    unknown = table.index[~table.index.isin(frame["seq_id"])].tolist()
    if unknown:
        line = table["line"].loc[unknown[0]]
        raise InputError(
            f"{len(unknown)} id(s) name no record of {fasta}, e.g. {unknown[0]!r} (line {line})"
            + (f", {', '.join(map(repr, unknown[1:3]))}" if len(unknown) > 1 else ""),
            path=labels, fix="correct the id to the record's name (the first word of its FASTA header), or "
                             "remove the row")
    for col in ("label", "split", "group"):
        frame[col] = table[col].reindex(frame["seq_id"]).to_numpy()
    return int((~frame["seq_id"].isin(table.index)).sum())


def check_labels(labels: list, path, line_of) -> None:
    """A label column as read from `path`: no control characters, and no number written
    two ways (`line_of(i)`: the line of labels[i], named in the message)."""
    check_label_text(labels, path)
    check_label_spellings(labels, lambda i: f"{path}:{line_of(i)}")


def check_label_text(labels, where: object) -> None:
    """Refuse labels holding control characters, naming the first such label and the fix.

    `labels`: any iterable of labels (None and NaN, i.e. unknown, are skipped);
    `where`: the file (or head folder) they come from, named in the message.
    """
    bad = sorted({label for label in labels if isinstance(label, str) and _CONTROL.search(label)})
    if not bad:
        return
    first = bad[0]
    char = _CONTROL.search(first).group()
    more = f" ({len(bad)} labels hold such characters)" if len(bad) > 1 else ""
    raise InputError(
        f"the label {first!r} holds the control character {char!r}{more}; tabs, line breaks and other "
        "control characters cannot be written into the per-sequence TSV, the BED of calls or the tracks",
        path=where, fix="remove the control characters from the labels (e.g. replace a tab by a space) "
                        "and run again")


def check_label_spellings(labels: list, where) -> None:
    """Labels that are one number written two ways ('1' and '1.0', '0' and '00') would
    become two classes: refuse them, naming where each spelling first appears
    (`where(i)` describes the place of labels[i])."""
    spellings: dict[float, list[str]] = {}
    for label in pd.unique(pd.Series(labels, dtype=object).dropna()):
        try:
            number = float(label)
        except ValueError:
            continue
        if not math.isnan(number):
            spellings.setdefault(number, []).append(label)
    for seen in spellings.values():
        if len(seen) > 1:
            a, b = seen[:2]
            raise InputError(
                f"labels {a!r} ({where(labels.index(a))}) and {b!r} ({where(labels.index(b))}) are the same "
                "number written two ways; they would become two classes",
                fix=f"write each class one way throughout (e.g. all {a!r}); if they are different classes, give "
                    "them names that are not numbers; if they are values (heads.task: regression), write every "
                    "number one way too (e.g. with the same decimals)")

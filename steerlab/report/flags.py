"""Flags beside the results a careful researcher would distrust, computed from a run's metrics and tables.

Each check reads ``metrics.json``'s dict (any command's: demo, run, probe, hallucination) or the
report's tables, and returns :class:`Flag` s; none is written for a particular run. The
thresholds are named below, each with the reason for its value.

    >>> flags = accuracy_ceiling_flags([{"method": m, "layer": l, "accuracy": 0.845, "auroc": 0.9}
    ...                                 for m in "ab" for l in range(4)], "held-out", majority=0.845)
    >>> print(flags[0].message)
    held-out: 8 of 8 accuracy cells equal the majority-class share (0.845): predicting one class scores that. Read AUROC instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

# A setting whose KL on neutral text exceeds the budget by more than 5% is outside it: the sweeps' alpha
# grids and the KL search stop within a few percent of the budget, so a larger excess is no rounding.
KL_TOLERANCE = 0.05
# |validation or cross-validation score - held-out score| above 0.10 is more than sampling noise: at the
# few hundred held-out rows these runs have, a score's standard error is about 0.03, so 0.10 is ~3 SE.
CV_GAP = 0.10
# An accuracy within half a test row of the majority-class share (or 0.005 when the row count is unknown)
# is what always answering the majority class scores.
BALANCE_TOLERANCE = 0.005
# When at least this share of a table's accuracy cells (and 4 or more) hold one and the same value, the
# value is a ceiling set by the data (class balance, duplicates), not a property of the methods.
PLATEAU_SHARE = 0.5
# AUROC within 0.05 of 0.5 is chance: AUROC's standard error under no signal is ~0.04 at 100 + 100 rows.
CHANCE_MARGIN = 0.05
# A generation is degenerate when it is empty, one word repeated (2 words or more), or has a run of this
# many identical words in a row ("it it it").
REPEAT_RUN = 3

# where a metrics key's results are shown: the section title they belong beside
SECTIONS = {
    "probes": ("Where", "Probes"),
    "steering.truth": ("Steering with the truth direction",),
    "steering.sentiment": ("Steering sentiment",),
    "steering": ("Steering with the probe direction", "Steering"),
    "hallucination": ("Hallucination detection",),
    "sae.concepts.truth": ("SAE features vs supervised directions: truth",),
    "sae.concepts.sentiment": ("SAE features vs supervised directions: sentiment",),
    "sae.edit_examples": ("Editing one latent",),
    "sae": ("SAE features vs the probe directions", "SAE"),
}


@dataclass(frozen=True)
class Flag:
    """One reason to distrust a result: ``kind`` (a short name), ``where`` (the metrics key it comes from,
    e.g. ``steering.truth``) and ``message`` (one sentence with the numbers)."""

    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


def all_flags(metrics: Mapping[str, Any], tables: Iterable[tuple[str, Sequence[Mapping[str, Any]]]] = ()
              ) -> list[Flag]:
    """Every check over ``metrics`` (a metrics.json dict) and ``tables`` (``(section title, rows)`` pairs)."""
    flags = kl_budget_flags(metrics)
    flags += cv_gap_flags(metrics)
    flags += probe_table_flags(metrics)
    flags += generation_flags(metrics)
    for title, rows in tables:
        flags += nan_flags(rows, title)
    return flags


# ---------------------------------------------------------------- steering outside the KL budget

def kl_budget_flags(metrics: Mapping[str, Any]) -> list[Flag]:
    """Chosen steering settings with KL on neutral text above their budget, and comparison rows whose KL
    was not matched to it (their efficacy is not comparable with the others')."""
    flags = []
    for where, node in _walk(metrics):
        if not isinstance(node, Mapping) or not is_number(node.get("kl_budget")):
            continue
        budget = float(node["kl_budget"])
        kl = node.get("kl_neutral")
        if is_number(kl) and kl > budget * (1 + KL_TOLERANCE):
            flags.append(Flag("KL budget", where, f"the reported setting's KL on neutral text is {kl:.3f} "
                                                   f"nats per token, above the budget of {budget:g}."))
        for key in ("comparison", "methods"):
            rows = node.get(key)
            if not isinstance(rows, list):
                continue
            outside = [row for row in rows if isinstance(row, Mapping) and "kl" in row
                       and (row.get("matched") is False or (is_number(row["kl"]) and row["kl"] > budget * (1 + KL_TOLERANCE)))]
            if outside:
                names = ", ".join(f"{row.get('method', '?')} (KL {_fmt(row['kl'])})" for row in outside)
                flags.append(Flag("KL budget", where, f"steered at a KL other than the budget of {budget:g} "
                                                       f"nats per token, so not comparable: {names}."))
    return flags


# ---------------------------------------------------------------- validation / CV far from held-out

def cv_gap_flags(metrics: Mapping[str, Any]) -> list[Flag]:
    """Validation or cross-validation scores more than :data:`CV_GAP` from the held-out score of the same thing."""
    flags = []
    probes = metrics.get("probes")
    if isinstance(probes, Mapping) and isinstance(probes.get("sweep"), list):
        held_out = _held_out_rows(probes)
        pairs = defaultdict(list)
        for row in probes["sweep"]:
            other = held_out.get((row.get("method"), row.get("layer")))
            if other is not None and is_number(row.get("accuracy")) and is_number(other):
                pairs[row["method"]].append((row["layer"], row["accuracy"], other))
        far = {method: [(layer, a, b) for layer, a, b in rows if abs(a - b) > CV_GAP] for method, rows in pairs.items()}
        far = {method: rows for method, rows in far.items() if rows}
        if far:
            method, (layer, a, b) = max(((m, r) for m, rows in far.items() for r in rows),
                                        key=lambda item: abs(item[1][1] - item[1][2]))
            where = "; ".join(f"{m} at {_layers([r[0] for r in rows])}" for m, rows in far.items())
            flags.append(Flag("CV vs held-out", "probes",
                              f"validation accuracy (a split of the training rows) is more than {CV_GAP:g} from "
                              f"held-out accuracy: {where} (largest: {method}, layer {layer}, {a:.3f} vs {b:.3f}). "
                              "Trust the held-out numbers."))
    hallucination = metrics.get("hallucination")
    if isinstance(hallucination, Mapping) and isinstance(hallucination.get("train_cv"), Mapping):
        for name, cv in hallucination["train_cv"].items():
            test = ((hallucination.get("methods") or {}).get(name) or {}).get("answer", {}).get("auroc")
            if is_number(cv) and is_number(test) and abs(cv - test) > CV_GAP:
                flags.append(Flag("CV vs held-out", "hallucination",
                                  f"{name}'s answer AUROC is {cv:.3f} by cross-validation on the train "
                                  f"split but {test:.3f} on the test split."))
    for where, node in _walk(metrics):
        if isinstance(node, Mapping) and is_number(node.get("train_cv_auroc")) and is_number(node.get("test_auroc")):
            cv, test = node["train_cv_auroc"], node["test_auroc"]
            if abs(cv - test) > CV_GAP:
                k = f" (k = {node['k']})" if "k" in node else ""
                flags.append(Flag("CV vs held-out", where, f"the chosen probe{k} has CV AUROC {cv:.3f} on the "
                                                           f"train split but {test:.3f} held out."))
    return flags


def _held_out_rows(probes: Mapping[str, Any]) -> dict[tuple[Any, Any], float]:
    """(method, layer) -> held-out accuracy: ``run``'s rows, or the demo's RaptorProbe list by layer."""
    if isinstance(probes.get("held_out"), list):
        return {(r.get("method"), r.get("layer")): r.get("accuracy") for r in probes["held_out"]}
    if isinstance(probes.get("held_out_accuracy"), list):
        return {("raptor", layer): value for layer, value in enumerate(probes["held_out_accuracy"])}
    return {}


# ---------------------------------------------------------------- probe tables: ceilings and chance layers

def probe_table_flags(metrics: Mapping[str, Any]) -> list[Flag]:
    """:func:`accuracy_ceiling_flags` and :func:`chance_layer_flags` over the probe sweep and held-out rows."""
    probes = metrics.get("probes")
    if not isinstance(probes, Mapping):
        return []
    data = metrics.get("data") or {}
    flags = []
    for name, key, majority, n in (("validation sweep", "sweep", None, None),
                                   ("held-out", "held_out", data.get("test_majority_share"), data.get("n_test"))):
        rows = probes.get(key)
        if isinstance(rows, list) and rows:
            flags += accuracy_ceiling_flags(rows, name, majority, n)
            flags += chance_layer_flags(rows, name)
    return flags


def accuracy_ceiling_flags(rows: Sequence[Mapping[str, Any]], label: str, majority: float | None = None,
                           n: int | None = None, where: str = "probes") -> list[Flag]:
    """Accuracy cells at the majority-class share, or most cells at one value (a ceiling, not a result)."""
    values = [row["accuracy"] for row in rows if is_number(row.get("accuracy"))]
    if not values:
        return []
    if is_number(majority):
        tolerance = 0.5 / n if n else BALANCE_TOLERANCE
        at = [v for v in values if abs(v - majority) <= tolerance]
        if at:
            return [Flag("class balance", where, f"{label}: {len(at)} of {len(values)} accuracy cells equal the "
                                                  f"majority-class share ({majority:.3f}): predicting one class scores "
                                                  "that. Read AUROC instead.")]
    value, count = Counter(round(v, 4) for v in values).most_common(1)[0]
    if count >= 4 and count >= PLATEAU_SHARE * len(values) and value < 1.0:
        cause = (f"not the class balance ({majority:.3f}): look for test rows every probe gets wrong (duplicates, "
                 "label noise, a template the training rows lack)" if is_number(majority) else
                 "the class balance or test rows every probe gets wrong")
        return [Flag("accuracy ceiling", where, f"{label}: {count} of {len(values)} accuracy cells are exactly "
                                                 f"{value:.3f}, a ceiling set by the data, {cause}; not a difference "
                                                 "between methods or layers. Read AUROC instead.")]
    return []


def chance_layer_flags(rows: Sequence[Mapping[str, Any]], label: str, where: str = "probes") -> list[Flag]:
    """Layers where every method's AUROC is within :data:`CHANCE_MARGIN` of 0.5."""
    by_layer: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        if "layer" in row and is_number(row.get("auroc")):
            by_layer[row["layer"]].append(row["auroc"])
    chance = [layer for layer, values in by_layer.items() if values and all(abs(v - 0.5) <= CHANCE_MARGIN
                                                                            for v in values)]
    if not chance:
        return []
    return [Flag("chance", where, f"{label}: every method is at chance (AUROC within {CHANCE_MARGIN:g} "
                                                f"of 0.5) at {_layers(chance)}.")]


# ---------------------------------------------------------------- generations

def generation_flags(metrics: Mapping[str, Any]) -> list[Flag]:
    """Empty or degenerate generations in any examples table (rows with a ``prompt`` and generated texts)."""
    flags = []
    for where, node in _walk(metrics):
        if not (isinstance(node, list) and node and all(isinstance(r, Mapping) and "prompt" in r for r in node)):
            continue
        bad = defaultdict(list)
        for row in node:
            for column, value in row.items():
                text = " ".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
                if column != "prompt" and isinstance(text, str):
                    reason = degenerate(text)
                    if reason:
                        bad[column].append(f"{text!r} ({reason})")
        for column, examples in bad.items():
            flags.append(Flag("degenerate generation", where,
                              f"{len(examples)} of {len(node)} '{column}' generations are empty or degenerate, "
                              f"e.g. {examples[0]}."))
    return flags


def degenerate(text: str) -> str:
    """Why ``text`` is a degenerate generation ("" when it is not).

    >>> degenerate("  "), degenerate("it it"), degenerate("good . it it it"), degenerate("good .")
    ('empty', 'one word repeated', '3 identical words in a row', '')
    """
    words = re.findall(r"\w+|[^\w\s]", text)
    if not words:
        return "empty"
    if len(words) >= 2 and len(set(words)) == 1:
        return "one word repeated"
    run = longest = 1
    for previous, word in zip(words, words[1:]):
        run = run + 1 if word == previous else 1
        longest = max(longest, run)
    return f"{longest} identical words in a row" if longest >= REPEAT_RUN else ""


# ---------------------------------------------------------------- NaN cells

def nan_flags(rows: Sequence[Mapping[str, Any]], title: str) -> list[Flag]:
    """Cells of a report table that are NaN or missing (None), by column."""
    columns: Counter[str] = Counter()
    for row in rows:
        for column, value in row.items():
            if is_missing(value):
                columns[column] += 1
    if not columns:
        return []
    where = ", ".join(f"{n} in '{column}'" for column, n in columns.items())
    return [Flag("NaN", title, f"{sum(columns.values())} table cells are NaN or missing ({where}).")]


def is_missing(value: Any) -> bool:
    """None or a float NaN (what a table shows as n/a)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---------------------------------------------------------------- helpers

def section_for(flag: Flag, titles: Sequence[str]) -> str | None:
    """The title of the section a flag belongs beside: the table's own title, else the first title starting
    with one of :data:`SECTIONS`' prefixes for the flag's metrics key (the longest key that matches)."""
    if flag.where in titles:
        return flag.where
    keys = sorted((key for key in SECTIONS if flag.where == key or flag.where.startswith(key + ".")), key=len,
                  reverse=True)
    for key in keys:
        for prefix in SECTIONS[key]:
            match = next((title for title in titles if title.startswith(prefix)), None)
            if match is not None:
                return match
    return None


def _walk(node: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) for ``node`` and everything nested in it (lists are not numbered)."""
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, (Mapping, list)):
                yield from _walk(value, path)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, None or NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if is_number(value) else "n/a"


def _layers(layers: Sequence[Any]) -> str:
    layers = sorted(layers)
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(str(layer) for layer in layers)

"""Issue 15: token-level hallucination detection on real models' own answers.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/real_hallucination.py \\
        [--models smollm2-135m-instruct gemma-3-270m] [--cities 748] [--qa 471] [--threads 1] \\
        [--out benchmarks/results_real_hallucination.json]

Protocol, per model:

1. Questions with checkable answers: "In which country is the city of X?" for the cities
   of the Geometry of Truth table (``../shared/data/got_cities.csv``, answer ``correct_country``)
   and steerlab's ``en/qa`` (capital, currency, official language, continent of a country).
   SmolLM2-135M-Instruct is asked through its chat template, Gemma-3-270M (a base model whose
   GGUF tokenizer has no chat template) with a two-example few-shot prompt. Greedy answers.
2. Each answer is checked through its first mention of a possible answer
   (:func:`steerlab.hallucination.check_answers`): countries by the alias table of
   :mod:`steerlab.hallucination.countries`, ``en/qa`` by each question's accepted spellings
   (plus every city as a possible wrong capital). Right / wrong / names none; the tokens of a
   wrong mention are labelled 1, the tokens before it 0, tokens after it are unchecked and
   dropped; answers naming nothing are counted and left out of detection.
3. Hidden states of every checked token at every layer; splits grouped by entity (the city;
   ``en/qa``'s own split by country); on the cities: optuna TPE layer search vs the
   exhaustive sweep (validation token AUROC of the MLP on a grouped split of the train
   answers), then the detectors at the chosen layer: Liang & Wang's MLP (joint loss with its
   KL term), Obeso et al.'s linear probe, 1 - max probability, entropy and steerlab's
   detector (MLP on token + producing states + confidence, x output odds), on the held-out
   entities (probe seeds 0..n-1) and by 5-fold cross-validation grouped by entity on train.
   ``en/qa``: the same detectors at the cities' layer, and the cities' probes transferred.
4. Live scoring with the KV cache: streamed scores vs offline scores on the same tokens, and the
   time per token next to plain generation (transformers' ``generate``) and to the former
   re-run-the-prefix streaming, side by side in this process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import steerlab
from steerlab.hallucination import (MentionTable, capture_token_ids, check_answers, checked_answers, country_table,
                                    generate_answers, stream_scores)
from steerlab.hallucination.evaluation import cross_val_scores, detection_metrics, with_output_odds
from steerlab.hallucination.layer_search import probe_objective, search_layer
from steerlab.models.tokenization import encode, pad
from steerlab.pipeline.output import json_ready
from steerlab.hallucination import HallucinationProbe, LinearTokenProbe
from steerlab.probes import ProbeInputError

CITIES_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "got_cities.csv"
MODELS = {  # chat template or few-shot, answer length
    "smollm2-135m-instruct": {"chat": True, "max_new_tokens": 32, "batch_size": 32},
    "gemma-3-270m": {"chat": False, "max_new_tokens": 6, "batch_size": 16},  # its 262k-token logits: 1 GB a batch
}
FEW_SHOT = {  # Gemma's examples: questions outside both sets
    "cities": (("In which country is the city of Toulouse?", "France"), ("In which country is the city of Seville?", "Spain")),
    "en/qa": (("What is the capital of Liberia?", "Monrovia"), ("What is the official language of Belize?", "English")),
}
CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania", "Australia", "Antarctica",
              "Central America", "Middle East", "Eurasia")  # possible (wrong) answers to "On which continent..."
CONTINENT_ADJECTIVES = {"Africa": "African continent", "Asia": "Asian continent", "Europe": "European continent",
                        "North America": "North American continent", "South America": "South American continent",
                        "Oceania": "Oceanian continent", "Australia": "Australian continent"}
CLAIM_PATTERNS = {  # en/qa: where an answer naming no known answer states its claim
    True: r"\b(?:is|are)\s+(?:the\s+|a\s+|an\s+)?([^.,;:(\n]+)",  # "The capital of Mali is KADAMA."
    False: r"^\s*([^.,;:(\n]+)",  # the few-shot answer line
}
KL_WEIGHT = 1.0  # the MLP's KL term (Liang & Wang list one; weight not published)
METHODS = {"mlp": "MLP probe, joint loss + KL (Liang & Wang)", "mlp_no_kl": "the same MLP without the KL term",
           "linear": "linear probe (Obeso et al.)",
           "plus": "steerlab detector (MLP on both states + confidence, x output odds)",
           "max_prob": "1 - max probability", "entropy": "entropy"}
SEARCH = {"n_trials": 10, "n_startup_trials": 3, "seed": 0}
SEARCH_PROBE = {"max_epochs": 80, "patience": 10}  # lighter fits for the per-layer objective
TEST_FRACTION = 0.3
CITY_COUNT = 748  # cities in got_cities.csv
LIVE_TIMING = {"new_tokens": 12, "repeats": 2}  # per timed prompt (2 prompts); the re-run stream is the slow one


@dataclass
class QuestionSet:
    """Questions of one set: the accepted answers, the names to mask, the entity, the split, the answer table."""

    name: str
    questions: list[str]
    accepted: list[list[str]]
    masks: list[list[str]]
    entities: list[str]
    test: np.ndarray  # [n] bool
    tables: list[MentionTable]  # per question


def city_questions(limit: int | None) -> QuestionSet:
    with open(CITIES_CSV, encoding="utf-8", newline="") as handle:
        country = {row["city"]: row["correct_country"] for row in csv.DictReader(handle)}
    cities = sorted(country)
    if limit:
        cities = random.Random(0).sample(cities, min(limit, len(cities)))
    test_cities = set(random.Random(1).sample(cities, round(TEST_FRACTION * len(cities))))
    table = country_table()
    return QuestionSet("cities", [f"In which country is the city of {city}?" for city in cities],
                       [[country[city]] for city in cities], [[city] for city in cities], cities,
                       np.array([city in test_cities for city in cities]), [table] * len(cities))


def qa_questions(limit: int | None) -> QuestionSet | None:
    """``en/qa``: its own split (grouped by country); answer tables per kind from ALL its questions."""
    from steerlab.datasets import load

    try:
        splits = {split: load("en/qa", split=split) for split in ("train", "test")}
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"en/qa not available ({error}); cities only")
        return None
    rows = [(text, group, kind, split) for split, ds in splits.items()
            for text, group, kind in zip(ds.texts, ds.groups, ds.kinds)]
    accepted_of = {**splits["train"].metadata["accepted_answers"], **splits["test"].metadata["accepted_answers"]}
    for text, _, kind, _ in rows:  # "the African continent" answers "On which continent is Kenya?"
        if kind == "continent":
            accepted_of[text] = accepted_of[text] + [CONTINENT_ADJECTIVES[a] for a in accepted_of[text]
                                                     if a in CONTINENT_ADJECTIVES]
    with open(CITIES_CSV, encoding="utf-8", newline="") as handle:
        cities = {row["city"] for row in csv.DictReader(handle)}
    extra = {"capital": cities, "continent": set(CONTINENTS) | set(CONTINENT_ADJECTIVES.values())}
    tables = {kind: MentionTable.from_accepted([accepted_of[text] for text, _, k, _ in rows if k == kind],
                                               extra=extra.get(kind, ())) for kind in sorted({r[2] for r in rows})}
    if limit:
        rows = random.Random(0).sample(rows, min(limit, len(rows)))
    return QuestionSet("en/qa", [r[0] for r in rows], [accepted_of[r[0]] for r in rows], [[r[1]] for r in rows],
                       [r[1] for r in rows], np.array([r[3] == "test" for r in rows]), [tables[r[2]] for r in rows])


def prompt_of(question: str, set_name: str, chat: bool) -> str:
    """The chat model gets the bare question (its template wraps it); the base model a few-shot prompt."""
    if chat:
        return question
    return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in FEW_SHOT[set_name]) + f"Q: {question}\nA:"


# ---------------------------------------------------------------- answers, checks, states


def answer_and_capture(model: Any, qs: QuestionSet, cfg: dict) -> dict:
    """Greedy answers, their checks, and the states of every checked token at every layer."""
    clock = time.perf_counter()
    prompts = [prompt_of(q, qs.name, cfg["chat"]) for q in qs.questions]
    prompt_ids, answer_ids = generate_answers(model, prompts, max_new_tokens=cfg["max_new_tokens"],
                                              batch_size=cfg["batch_size"], chat_template=cfg["chat"])
    generate_s = time.perf_counter() - clock
    claims: list[Any] = [None] * len(prompts)
    for table in {id(t): t for t in qs.tables}.values():  # one check per answer table (en/qa: per kind)
        rows = [i for i, t in enumerate(qs.tables) if t is table]
        for i, claim in zip(rows, check_answers(model.tokenizer, [answer_ids[i] for i in rows],
                                                [qs.accepted[i] for i in rows], table, [qs.masks[i] for i in rows],
                                                claim_pattern=CLAIM_PATTERNS[cfg["chat"]] if qs.name == "en/qa"
                                                else None)):
            claims[i] = claim
    ids, y = checked_answers(answer_ids, claims)
    clock = time.perf_counter()
    gen = capture_token_ids(model, prompt_ids, ids, prompts=prompts, batch_size=cfg["batch_size"])
    counts = {outcome: sum(c.outcome == outcome for c in claims) for outcome in ("right", "wrong", "none")}
    examples = {outcome: [{"question": qs.questions[i], "answer": claims[i].text.strip(),
                           "expected": qs.accepted[i][0]} for i in range(len(claims)) if claims[i].outcome == outcome][:4]
                for outcome in ("wrong", "none")}
    answers = [[qs.questions[i], c.text.strip(), c.outcome, c.mention.text if c.mention else None]
               for i, c in enumerate(claims)]  # every answer and its check, for auditing the checker
    return {"gen": gen, "y": y, "claims": claims, "prompts": prompts, "counts": counts, "examples": examples,
            "answers": answers,
            "tokens": len(gen), "hallucinated_tokens": int(y.sum()),
            "seconds": {"generate": round(generate_s, 1), "capture": round(time.perf_counter() - clock, 1)}}


# ---------------------------------------------------------------- detectors


def detector_scores(train: dict, test: dict, layer: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Test token scores of every detector (probes fitted on ``train``) and the fitted probes.

    ``train`` / ``test``: ``{"gen", "y", "entity"}`` with token rows; ``entity [n_tokens]`` groups the splits.
    """
    inputs = {"mlp": (layer, "token", False), "mlp_no_kl": (layer, "token", False), "linear": (layer, "token", False),
              "plus": (layer, "both", True)}
    probes = {"mlp": HallucinationProbe(kl_weight=KL_WEIGHT, random_state=seed),
              "mlp_no_kl": HallucinationProbe(kl_weight=0.0, random_state=seed),
              "linear": LinearTokenProbe(random_state=seed),
              "plus": HallucinationProbe(kl_weight=KL_WEIGHT, random_state=seed)}
    scores = {}
    for name, probe in probes.items():
        probe.fit(train["gen"].features(*inputs[name]), train["y"], groups=train["entity"])
        probe.layer_, probe.site_ = layer, train["gen"].site
        scores[name] = probe.predict_proba(test["gen"].features(*inputs[name]))[:, 1]
    scores["plus"] = with_output_odds(scores["plus"], test["gen"].max_prob)
    scores["max_prob"], scores["entropy"] = 1 - test["gen"].max_prob, test["gen"].entropy
    return scores, probes


def held_out(train: dict, test: dict, layer: int, seeds: int) -> tuple[dict[str, dict], dict[str, Any]]:
    """Metrics on the held-out entities, probe metrics averaged over seeds (AUROC std kept); seed 0's probes."""
    runs, first_probes = [], None
    for seed in range(seeds):
        scores, probes = detector_scores(train, test, layer, seed)
        first_probes = first_probes or probes
        runs.append({name: detection_metrics(test["y"], s, test["gen"].answer_index) for name, s in scores.items()})
    return {name: average_runs([run[name] for run in runs]) for name in METHODS}, first_probes


def average_runs(runs: list[dict]) -> dict:
    """Mean of every metric over runs, plus ``auroc_std`` per level."""
    out = {}
    for level in ("token", "answer"):
        out[level] = {key: float(np.mean([run[level][key] for run in runs])) for key in runs[0][level]}
        out[level]["auroc_std"] = float(np.std([run[level]["auroc"] for run in runs], ddof=1)) if len(runs) > 1 else 0.0
    return out


def grouped_cv(train: dict, layer: int) -> dict[str, float]:
    """Answer AUROC by 5-fold cross-validation on the train answers, folds grouped by entity."""
    gen, y, entity = train["gen"], train["y"], train["entity"]
    oof = {name: cross_val_scores(probe, gen.features(*read).numpy(), y, entity)
           for name, probe, read in (("mlp", HallucinationProbe(kl_weight=KL_WEIGHT), (layer, "token", False)),
                                     ("linear", LinearTokenProbe(), (layer, "token", False)),
                                     ("plus", HallucinationProbe(kl_weight=KL_WEIGHT), (layer, "both", True)))}
    oof["plus"] = with_output_odds(oof["plus"], gen.max_prob)
    oof["max_prob"], oof["entropy"] = 1 - gen.max_prob, gen.entropy
    return {name: detection_metrics(y, s, gen.answer_index)["answer"]["auroc"] for name, s in oof.items()}


def split_rows(data: dict, qs: QuestionSet) -> dict[str, dict]:
    """Token rows of the train and test questions: ``{"train": {"gen", "y", "entity"}, "test": ...}``."""
    gen, y = data["gen"], data["y"]
    test_row = qs.test[gen.answer_index]
    entity = np.array(qs.entities, dtype=object)[gen.answer_index]
    _, entity_id = np.unique(entity, return_inverse=True)
    return {split: {"gen": gen.select(rows), "y": y[rows], "entity": entity_id[rows]}
            for split, rows in (("train", np.flatnonzero(~test_row)), ("test", np.flatnonzero(test_row)))}


def layer_search(train: dict) -> dict:
    """optuna TPE vs the exhaustive sweep: validation token AUROC of a (lighter) MLP per layer."""
    gen = train["gen"]
    objective = probe_objective(HallucinationProbe(kl_weight=KL_WEIGHT, **SEARCH_PROBE), gen.hidden, gen.layers,
                                train["y"], train["entity"])
    return search_layer(objective, gen.layers, exhaustive=True, **SEARCH).to_dict()


# ---------------------------------------------------------------- live scoring


def live(model: Any, probe: Any, layer: int, data: dict, qs: QuestionSet, cfg: dict,
         repeats: int = LIVE_TIMING["repeats"]) -> dict:
    """Streamed vs offline scores on test answers (2 right, 2 wrong), and ms per token side by side."""
    gen, claims = data["gen"], data["claims"]
    test = [i for i in range(len(claims)) if qs.test[i] and claims[i].outcome != "none"]
    chosen = [i for i in test if claims[i].outcome == "right"][:2] + [i for i in test if claims[i].outcome == "wrong"][:2]
    offline = probe.predict_proba(gen.layer(layer))[:, 1]
    differences, compared = [], 0
    for i in chosen:
        rows = np.flatnonzero(gen.answer_index == i)
        streamed = list(stream_scores(model, probe, data["prompts"][i], max_new_tokens=cfg["max_new_tokens"],
                                      chat_template=cfg["chat"]))[:len(rows)]
        if [t for t, _ in streamed] == [gen.tokens[r] for r in rows]:
            compared += 1
            differences.append(float(np.abs(np.array([s for _, s in streamed]) - offline[rows]).max()))
    timing = time_per_token(model, probe, layer, [data["prompts"][i] for i in chosen[1:3]], cfg, repeats)
    return {"n_compared": compared, "n_examples": len(chosen),
            "max_abs_diff_offline": max(differences) if differences else None, "timing_ms_per_token": timing}


def time_per_token(model: Any, probe: Any, layer: int, prompts: list[str], cfg: dict, repeats: int) -> dict:
    """Median ms per generated token: transformers' generate, the KV-cache stream, the old re-run stream."""
    n_tokens = LIVE_TIMING["new_tokens"]
    point = model.point(probe.site_ or "resid_post", layer)
    runs: dict[str, list[float]] = {"generate (no probe)": [], "stream_scores, KV cache": [],
                                    "re-run the prefix each token (before)": []}
    for _ in range(repeats):
        for prompt in prompts:
            ids = encode(model.tokenizer, [prompt], max_length=None, chat_template=cfg["chat"])[0]
            start = time.perf_counter()
            with torch.no_grad():
                new = model.generate_ids(pad([ids], pad_id=model.pad_token_id, side="left"), max_new_tokens=n_tokens)
            runs["generate (no probe)"].append((time.perf_counter() - start) / new.shape[1])
            start = time.perf_counter()
            count = sum(1 for _ in stream_scores(model, probe, prompt, max_new_tokens=n_tokens, chat_template=cfg["chat"]))
            runs["stream_scores, KV cache"].append((time.perf_counter() - start) / max(count, 1))
            start = time.perf_counter()
            count = rerun_stream(model, probe, point, ids, n_tokens)
            runs["re-run the prefix each token (before)"].append((time.perf_counter() - start) / max(count, 1))
    return {name: round(1000 * statistics.median(values), 2) for name, values in runs.items()}


def rerun_stream(model: Any, probe: Any, point: Any, ids: list[int], n_tokens: int) -> int:
    """The streaming loop steerlab had before the KV cache: one forward of the whole sequence per token."""
    from steerlab.hallucination.generation import stop_token_ids

    stop, seen, count = stop_token_ids(model), {}, 0
    for _ in range(n_tokens):
        with torch.no_grad():
            logits = model.forward(pad([ids], pad_id=model.pad_token_id, side="right"),
                                   [(point, lambda a: seen.update(state=a[0, -1:].float().cpu()))])
        probe.predict_proba(seen["state"].numpy())
        token = int(logits[0, -1].argmax())
        if token in stop:
            break
        ids, count = ids + [token], count + 1
    return count


# ---------------------------------------------------------------- main


def run_model(name: str, sets: list[QuestionSet], seeds: int, out: dict, save: Any) -> None:
    """Every set on one model, into ``out`` (saved after each set): the cities choose the layer, en/qa reuses it."""
    cfg = MODELS[name]
    clock = time.perf_counter()
    model = steerlab.load_model(name)
    out.update({"load_seconds": round(time.perf_counter() - clock, 1), "n_layers": model.n_layers, "sets": {}})
    cities_probes, layer = None, None
    for qs in sets:
        print(f"[{name}] {qs.name}: {len(qs.questions)} questions", flush=True)
        data = answer_and_capture(model, qs, cfg)
        parts = split_rows(data, qs)
        result = {key: data[key] for key in ("counts", "examples", "tokens", "hallucinated_tokens", "seconds",
                                             "answers")}
        result["split"] = {split: {"answers": len(np.unique(p["gen"].answer_index)), "tokens": len(p["y"]),
                                   "wrong_answers": len(np.unique(p["gen"].answer_index[p["y"] == 1]))}
                           for split, p in parts.items()}
        out["sets"][qs.name] = result
        try:
            clock = time.perf_counter()
            if layer is None:
                result["layer_search"] = layer_search(parts["train"])
                layer = result["layer_search"]["best_layer"]
            result["layer"] = layer
            result["held_out"], probes = held_out(parts["train"], parts["test"], layer, seeds)
            result["cv_answer_auroc"] = grouped_cv(parts["train"], layer)
            result["seconds"]["detectors"] = round(time.perf_counter() - clock, 1)
            if cities_probes is None:
                cities_probes = probes
                clock = time.perf_counter()
                result["live"] = live(model, probes["mlp"], layer, data, qs, cfg)
                result["seconds"]["live"] = round(time.perf_counter() - clock, 1)
            else:
                result["transfer_from_cities"] = transfer(cities_probes, parts["test"], layer)
        except ProbeInputError as error:  # too few wrong answers on one side (small --cities / --qa)
            result["error"] = str(error)
        save()
        print(json.dumps({k: result.get(k) for k in ("counts", "layer", "error")}), flush=True)


def transfer(probes: dict[str, Any], test: dict, layer: int) -> dict[str, float]:
    """Answer AUROC on ``test`` of probes fitted on another set (the cities) at the same layer."""
    return {key: detection_metrics(test["y"], probes[key].predict_proba(test["gen"].features(layer))[:, 1],
                                   test["gen"].answer_index)["answer"]["auroc"] for key in ("mlp", "linear")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--cities", type=int, default=None, help="cities to ask about (default: all 748)")
    parser.add_argument("--qa", type=int, default=None, help="en/qa questions (default: all; 0 = skip the set)")
    parser.add_argument("--seeds", type=int, default=3, help="probe seeds on the held-out split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results_real_hallucination.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only merge the results of separate runs (e.g. "
                        "one per model, run side by side) into --out and its .md")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    sets = [city_questions(args.cities)]
    if args.qa != 0:
        sets += [qs for qs in [qa_questions(args.qa)] if qs is not None]
    command = "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/real_hallucination.py " + " ".join(
        f"--{key} {value}" for key, value in (("models", " ".join(args.models)), ("cities", args.cities),
                                              ("qa", args.qa), ("seeds", args.seeds), ("threads", args.threads))
        if value is not None)
    results: dict[str, Any] = {
        "models": {name: {} for name in args.models}, "commands": [command],
        "settings": {"models": MODELS, "kl_weight": KL_WEIGHT, "search": SEARCH, "search_probe": SEARCH_PROBE,
                     "live_timing": LIVE_TIMING,
                     "test_fraction": TEST_FRACTION, "seeds": args.seeds, "few_shot": FEW_SHOT},
        "environment": {"torch_threads": torch.get_num_threads(), "cpu": cpu_model(),
                        "python": platform.python_version(), "torch": torch.__version__}}

    def save() -> None:
        results.update(seconds=round(time.perf_counter() - start, 1),
                       cpu_seconds=round(time.process_time() - cpu_start, 1))
        Path(args.out).write_text(json.dumps(json_ready(results), indent=1, allow_nan=False))

    for name in args.models:
        run_model(name, sets, args.seeds, results["models"][name], save)
    save()
    write_markdown(json.loads(Path(args.out).read_text()), args.out.removesuffix(".json") + ".md")
    print(f"wrote {args.out} and its .md in {results['seconds']} s")


def merge(paths: list[str], out: str) -> None:
    """One results file (and its .md) from runs of different models: their models, commands and times together."""
    runs = [json.loads(Path(path).read_text()) for path in paths]
    merged = {**runs[0], "models": {name: r for run in runs for name, r in run["models"].items()},
              "commands": [command for run in runs for command in run["commands"]],
              "seconds": max(run["seconds"] for run in runs), "cpu_seconds": sum(run["cpu_seconds"] for run in runs)}
    Path(out).write_text(json.dumps(merged, indent=1, allow_nan=False))
    write_markdown(merged, out.removesuffix(".json") + ".md")
    print(f"wrote {out} and its .md from {len(runs)} runs")


# ---------------------------------------------------------------- the markdown summary


def write_markdown(results: dict, path: str) -> None:
    """benchmarks/results_real_hallucination.md from the JSON results."""
    env = results["environment"]
    lines = ["# Token-level hallucination detection on real models (issue 15)", "",
             "Command(s), run side by side and merged with `--merge`: "
             + "; ".join(f"`{command}`" for command in results["commands"])
             + f" ({results['seconds']} s wall for the longest, {results['cpu_seconds']} s of CPU time in all, on "
             f"{env['cpu']}, torch {env['torch']}, {env['torch_threads']} torch thread(s); the machine was shared "
             "with other jobs, so wall times are upper bounds). Protocol: the docstring of "
             "`benchmarks/real_hallucination.py`.", ""] + _size_lines(results) + [
             "## How an answer is checked", "",
             "An answer is checked through its FIRST mention of a possible answer "
             "(`steerlab.hallucination.check_answers`). Countries: the alias table of "
             "`steerlab.hallucination.countries` (each country's short and official names, abbreviations such as "
             "USA / U.S. / UK / DRC, older names such as Burma or Ivory Coast, and its adjective: \"the Indian state "
             "of Gujarat\" names India; an adjective two countries share names both), whole words, case-sensitive, "
             "the longest name at the earliest position; phrases such as \"South China Sea\" or \"South "
             "American\" are read past; the asked city's own name is masked (\"Benin City\" names no country). "
             "\"USA\", \"United States\" and \"the United States of America\" all map to the one canonical "
             "name, so each counts as right for a US city. `en/qa`: the question's accepted spellings (the "
             "`accepted_answers` of the set), every other question's answers of the same kind, and every city of "
             "the cities table as a possible wrong capital (a continent's adjective, \"the African continent\", "
             "names it); case-insensitive; an answer naming none of them but stating a claim (SmolLM2: the words "
             "after \"is\": \"The capital of Mali is KADAMA.\"; Gemma: its answer line) claims an answer no "
             "question accepts: wrong. Right: the mention names the reference. Wrong: it names another answer; "
             "its tokens are labelled 1, the tokens before it 0, the tokens after it are unchecked and dropped. "
             "Names none: counted below, left out of detection.", "",
             "## Answers", "",
             "| model | set | questions | right | wrong | names no answer | wrong share of checked | checked tokens "
             "(hallucinated) |", "|---|---|---|---|---|---|---|---|"]
    for model, m in results["models"].items():
        for name, r in m["sets"].items():
            c = r["counts"]
            lines.append(f"| {model} | {name} | {sum(c.values())} | {c['right']} | {c['wrong']} | {c['none']} | "
                         f"{c['wrong'] / max(1, c['right'] + c['wrong']):.2f} | {r['tokens']} "
                         f"({r['hallucinated_tokens']}) |")
    lines += ["", "Examples (first wrong / unanswered ones, answer text up to the generation limit):", ""]
    for model, m in results["models"].items():
        for name, r in m["sets"].items():
            for outcome, rows in r["examples"].items():
                for row in rows[:2]:
                    lines.append(f"- {model}, {name}, {outcome}: {row['question']} -> \"{_clip(row['answer'])}\" "
                                 f"(expected {row['expected']})")
    for model, m in results["models"].items():
        for name, r in m["sets"].items():
            lines += _detector_lines(model, name, r) if "held_out" in r else [
                "", f"## {model}, {name}: no detectors ({r.get('error', 'not run')})"]
    lines += _layer_lines(results) + _live_lines(results) + _reading_lines(results)
    Path(path).write_text("\n".join(lines) + "\n")


def _detector_lines(model: str, name: str, r: dict) -> list[str]:
    split = r["split"]
    lines = ["", f"## {model}, {name}: detectors on held-out entities (layer {r['layer']})", "",
             f"Train {split['train']['answers']} answers ({split['train']['wrong_answers']} wrong), test "
             f"{split['test']['answers']} answers ({split['test']['wrong_answers']} wrong, {split['test']['tokens']} "
             "tokens); probe numbers are means over seeds (AUROC +- std); CV: answer AUROC by 5-fold "
             "cross-validation on the train answers grouped by entity (seed 0).", "",
             "| method | token AUROC | token R@1% FPR | token R@5% | token R@10% | answer AUROC | answer R@1% FPR "
             "| answer R@5% | answer R@10% | CV answer AUROC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in METHODS.items():
        t, a = r["held_out"][key]["token"], r["held_out"][key]["answer"]
        spread = lambda level: f" +- {level['auroc_std']:.3f}" if level["auroc_std"] else ""  # noqa: E731
        lines.append(f"| {label} | {_f(t['auroc'])}{spread(t)} | {_f(t['recall@1%fpr'])} | {_f(t['recall@5%fpr'])} | "
                     f"{_f(t['recall@10%fpr'])} | {_f(a['auroc'])}{spread(a)} | {_f(a['recall@1%fpr'])} | "
                     f"{_f(a['recall@5%fpr'])} | {_f(a['recall@10%fpr'])} | {_f(r['cv_answer_auroc'].get(key))} |")
    if "transfer_from_cities" in r:
        t = r["transfer_from_cities"]
        lines += ["", f"Probes fitted on the cities' train answers, scored on these test answers (no {name} training): "
                  f"answer AUROC MLP {_f(t['mlp'])}, linear {_f(t['linear'])}."]
    return lines


def _layer_lines(results: dict) -> list[str]:
    lines = ["", "## Layer choice: optuna TPE vs the exhaustive sweep (cities, train answers)", "",
             f"TPE: seed 0, {SEARCH['n_startup_trials']} random start-up trials, {SEARCH['n_trials']} trials; the "
             "objective is the validation token AUROC of the MLP (max 80 epochs, patience 10) on a grouped 70/30 "
             "split of the train answers; a layer asked twice is not refitted.", "",
             "| model | TPE layer | TPE fits | its validation AUROC | sweep best layer | sweep fits | its validation "
             "AUROC |", "|---|---|---|---|---|---|---|"]
    curves = []
    for model, m in results["models"].items():
        if "layer_search" not in m["sets"]["cities"]:
            continue
        s = m["sets"]["cities"]["layer_search"]
        best = s["exhaustive"][str(s["exhaustive_best_layer"])]
        lines.append(f"| {model} | {s['best_layer']} | {s['n_fits']} | {_f(s['best_value'])} | "
                     f"{s['exhaustive_best_layer']} | {s['n_layers']} | {_f(best)} |")
        curves.append(f"{model}: " + ", ".join(f"{k}: {_f(v)}" for k, v in s["exhaustive"].items()))
    return lines + ["", "Validation token AUROC by layer: " + "; ".join(curves) + "."]


def _live_lines(results: dict) -> list[str]:
    lines = ["", "## Live scoring with the KV cache", "",
             "`stream_scores` on test answers of the cities (2 right, 2 wrong) with the fitted MLP probe: the streamed "
             "scores of the checked tokens against the offline ones (`capture_token_ids` + `predict_proba`), and the "
             f"median time per generated token (up to {LIVE_TIMING['new_tokens']} new tokens per prompt, 2 of those "
             f"prompts, {LIVE_TIMING['repeats']} repeats, one "
             "process, side by side).", "",
             "| model | answers compared | max abs(streamed - offline) | generate (no probe) ms/token | stream_scores "
             "(KV cache) ms/token | before: re-run the prefix ms/token | stream / generate |",
             "|---|---|---|---|---|---|---|"]
    for model, m in results["models"].items():
        if "live" not in m["sets"]["cities"]:
            continue
        lv = m["sets"]["cities"]["live"]
        t = lv["timing_ms_per_token"]
        plain, stream, rerun = t["generate (no probe)"], t["stream_scores, KV cache"], \
            t["re-run the prefix each token (before)"]
        diff = "n/a" if lv["max_abs_diff_offline"] is None else f"{lv['max_abs_diff_offline']:.1e}"
        lines.append(f"| {model} | {lv['n_compared']} of {lv['n_examples']} | {diff} | {plain} | {stream} | {rerun} | "
                     f"{stream / plain:.2f} |")
    return lines


def _size_lines(results: dict) -> list[str]:
    """Which subset was asked (a reduced run says so) and how to read the token-level numbers."""
    asked = {name: sum(r["counts"].values()) for m in results["models"].values() for name, r in m["sets"].items()}
    sizes = ", ".join(f"{name}: {n} questions" for name, n in asked.items())
    reduced = asked.get("cities", CITY_COUNT) < CITY_COUNT
    return (["**A reduced run**" + f" ({sizes} per model; the cities a seeded random sample of the {CITY_COUNT}): "
             "the 2 shared cores ran some 20 other jobs at the time (load average ~20), so the full run (the "
             "script's defaults: every city and every `en/qa` question) did not fit its 30 minutes. Test splits "
             "hold few wrong answers: read every held-out number with its size and seed spread.", ""] if reduced else []
            ) + ["Token AUROC counts every checked token. In SmolLM2's sentence answers the template words before "
                 "the mention (\"The city of X is located in\") are easy negatives, so its token AUROC runs above its "
                 "answer AUROC (the max score over an answer's tokens against whether the answer is wrong: the number "
                 "to compare across detectors); Gemma's few-shot answers start with the country itself.", ""]


def _reading_lines(results: dict) -> list[str]:
    """Where the papers' claims hold here, in numbers."""
    lines = ["", "## Beside the papers", "",
             "Papers: Obeso et al. report token-probe AUROC 0.90 vs 0.71 for semantic entropy (Llama-3.3-70B, "
             "long-form); Liang & Wang report their MLP probe +5.6 accuracy and +8.2 recall points over the linear "
             "probe on LongFact. Here (held-out entities, answer AUROC):", ""]
    for model, m in results["models"].items():
        for name, r in m["sets"].items():
            if "held_out" not in r:
                continue
            h = r["held_out"]
            a = {key: h[key]["answer"]["auroc"] for key in METHODS}
            baseline = max(a["max_prob"], a["entropy"])
            probe = max(a["mlp"], a["linear"])
            cv = r["cv_answer_auroc"]
            flags = [key for key in ("mlp", "linear", "plus") if abs(cv[key] - a[key]) > 0.1]
            lines.append(
                f"- {model}, {name}: MLP {_f(a['mlp'])} vs linear {_f(a['linear'])} (MLP {_signed(a['mlp'] - a['linear'])}; "
                f"answer recall at 5% FPR {_f(h['mlp']['answer']['recall@5%fpr'])} vs "
                f"{_f(h['linear']['answer']['recall@5%fpr'])}); best paper probe {_f(probe)} vs best output-confidence "
                f"baseline {_f(baseline)} ({_signed(probe - baseline)}); steerlab's detector {_f(a['plus'])}; the KL "
                f"term {_signed(a['mlp'] - a['mlp_no_kl'])} answer AUROC (MLP with vs without)."
                + (f" Held-out and CV disagree by more than 0.1 for: {', '.join(flags)} (small test split: read the "
                   "seed spread)." if flags else ""))
    for model, m in results["models"].items():
        search = m["sets"]["cities"].get("layer_search")
        if search:
            tpe, sweep = search["best_layer"], search["exhaustive_best_layer"]
            found = "found the sweep's layer" if tpe == sweep else f"chose layer {tpe}, the sweep {sweep},"
            lines.append(f"- {model}, layer search: TPE {found} with {search['n_fits']} fits instead of "
                         f"{search['n_layers']} (validation AUROC {_f(search['best_value'])} vs "
                         f"{_f(search['exhaustive'][str(sweep)])}).")
    return lines


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _clip(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width] + "..."


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()

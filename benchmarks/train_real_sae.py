"""Train the shipped SmolLM2-135M-Instruct SAE (issue 15): TopK, sae-lens' SAETrainer, real text.

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 \\
        .venv/bin/python benchmarks/train_real_sae.py --out assets/smollm2-sae/topk-blocks.15.hook_resid_post

Stages (each one resumes from ``--work``, so a killed run picks up where it stopped):

1. ``sample``: text sampled from the model itself (temperature 1, top-p 0.95, seeded batches):
   answers to chat prompts built from topic templates and the cities of got_cities, and plain
   continuations of the first words of SST-2 reviews; saved to ``samples.jsonl``.
2. ``capture``: the corpus (SST-2 train rows, got_cities statements, the project's ``en/*`` sets,
   chat-format questions about the cities statements and a quarter of the SST-2 reviews (the
   chat readouts ``benchmarks/real_sae.py`` steers), the samples) is split by text into train / held-out (:data:`HELDOUT_SHARE` of each source) and
   captured with ``steerlab.capture(position="all")`` at ``blocks.{layer}.hook_resid_post``, texts
   sorted by length in batches, into resumable shard stores. Only the layers up to ``--layer`` run
   (the later blocks and the LM head are cut for the capture: their output is never read).
3. ``train``: every token after the first of each text (the attention sink; see below) is a row;
   sae-lens' ``SAETrainer`` on shuffled batches (:func:`steerlab.sae.training.train_sae_on_activations`).
4. ``evaluate``: on the held-out texts: explained variance, L0, dead / dense latents, and the CE
   loss with the SAE spliced in (full model), per source.

The attention sink: the first token's residual norm at layer 15 is ~130x the median (~23,000 vs
~175); it is left out of training and of every steerlab SAE helper by default. On plain text whose
first word is split into pieces, the second token sometimes carries a sink too (norm > 10x the
median on ~0.4% of texts, never in the chat format): those rows (norm above
:data:`MASSIVE_NORM_FACTOR` x the median) are dropped from training and reported separately.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

import torch

MODEL = "smollm2-135m-instruct"
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2_train.csv"
CITIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "got_cities.csv"
EN_SETS = ("en/cities", "en/neg_cities", "en/larger_than", "en/smaller_than", "en/sp_en_trans", "en/facts")
HELDOUT_SHARE = 0.05
MASSIVE_NORM_FACTOR = 10.0

TOPICS = (
    "photosynthesis", "the French revolution", "black holes", "climate change", "the immune system",
    "machine learning", "the Roman empire", "volcanoes", "coffee", "the stock market", "chess", "jazz music",
    "the ocean", "honeybees", "the moon landing", "electric cars", "vaccines", "the printing press", "sleep",
    "friendship", "a rainy day", "a haunted house", "a lost dog", "a job interview", "learning to cook",
    "the internet", "democracy", "the water cycle", "dinosaurs", "the human brain", "soccer", "gardening",
    "bread baking", "renewable energy", "ancient Egypt", "the Silk Road", "earthquakes", "penguins",
    "a trip to the mountains", "a birthday party", "recycling", "public transport", "video games",
    "the Olympic games", "the periodic table", "Shakespeare", "a detective story", "space travel",
    "a small village", "the desert", "rainforests", "money", "taxes", "a wedding", "a storm at sea",
    "robots", "smartphones", "the piano", "painting", "a summer holiday", "a science fair", "time travel",
    "a dragon", "the night sky", "mathematics", "prime numbers", "the history of tea", "bicycles",
)
CHAT_TEMPLATES = (
    "Explain {topic} in simple terms.", "Write a short story about {topic}.", "Give me three facts about {topic}.",
    "What are the pros and cons of {topic}?", "Write a short review of a movie about {topic}.",
    "Write a negative review of a movie about {topic}.", "What do you think about {topic}?",
    "Write a poem about {topic}.",
)
TRUTH_QUESTION = "Is the following statement true or false?\n{statement}"  # real_sae.py's truth readout
REVIEW_QUESTION = "Is this movie review positive or negative?\n{review}"
CHAT_REVIEW_STRIDE = 4  # every 4th SST-2 review is also asked about in the chat format
CITY_TEMPLATES = ("Tell me about the city of {city}.", "In which country is the city of {city}?",
                  "Is it true that {statement}")


def chat_text(user: str, answer: str = "") -> str:
    """A user turn and the assistant's answer in SmolLM2's chat format, without the default system turn."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}"


def sample_prompts(n: int, seed: int) -> list[dict]:
    """``n`` prompts: 60% topic chat prompts, 20% city chat prompts, 20% plain SST-2 starts."""
    import pandas as pd

    rng = random.Random(seed)
    cities = pd.read_csv(CITIES)
    sst = pd.read_csv(SST2)["text"].tolist()
    prompts = []
    for index in range(n):
        kind = ("topic", "topic", "topic", "city", "plain")[index % 5]
        if kind == "topic":
            text = chat_text(rng.choice(CHAT_TEMPLATES).format(topic=rng.choice(TOPICS)))
        elif kind == "city":
            row = cities.iloc[rng.randrange(len(cities))]
            statement = row["statement"][0].lower() + row["statement"][1:]
            text = chat_text(rng.choice(CITY_TEMPLATES).format(city=row["city"], statement=statement))
        else:
            text = " ".join(rng.choice(sst).split()[:rng.randint(2, 5)])
        prompts.append({"kind": kind, "prompt": text})
    return prompts


def sample_stage(model, work: Path, n: int, max_new_tokens: int, batch_size: int, seed: int) -> list[dict]:
    """Sample ``n`` continuations (resumable: ``samples.jsonl`` grows one batch at a time)."""
    from tqdm.auto import tqdm

    path = work / "samples.jsonl"
    done = [json.loads(line) for line in path.read_text().splitlines()][:n] if path.exists() else []
    prompts = sample_prompts(n, seed)
    eos = model.tokenizer.eos_token_id
    with path.open("a") as sink, tqdm(total=n, initial=len(done), desc="sample", unit="text") as bar:
        for start in range(len(done), n, batch_size):
            chunk = prompts[start:start + batch_size]
            batch = model.tokenize([p["prompt"] for p in chunk], padding_side="left")
            torch.manual_seed(seed * 100_003 + start)
            ids = model.generate_ids(batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0,
                                     top_p=0.95)
            for p, row in zip(chunk, ids.tolist()):
                if eos in row:
                    row = row[:row.index(eos) + 1]  # keep <|im_end|>: chat text ends with it
                record = {**p, "text": p["prompt"] + model.tokenizer.decode(row), "new_tokens": len(row)}
                sink.write(json.dumps(record) + "\n")
                done.append(record)
            sink.flush()
            bar.update(len(chunk))
    return done


def source_texts(samples: list[dict]) -> dict[str, list[str]]:
    """The corpus by source (texts deduplicated within a source, in a fixed order)."""
    import pandas as pd

    from steerlab.datasets import load

    english = []
    for name in EN_SETS:
        for split in ("train", "test"):
            english += load(name, split=split).texts
    for split in ("train", "test"):
        english += load("en/qa", split=split).texts
    sst2, cities = pd.read_csv(SST2)["text"].tolist(), pd.read_csv(CITIES)["statement"].tolist()
    questions = [chat_text(TRUTH_QUESTION.format(statement=statement)) for statement in cities]
    questions += [chat_text(REVIEW_QUESTION.format(review=review)) for review in sst2[::CHAT_REVIEW_STRIDE]]
    sources = {"sst2": sst2, "got_cities": cities, "en_sets": english, "chat_questions": questions,
               "samples": [s["text"] for s in samples]}
    return {name: list(dict.fromkeys(texts)) for name, texts in sources.items()}


def split_corpus(sources: dict[str, list[str]], seed: int) -> dict[str, dict[str, list[str]]]:
    """Per source ``{"train": [...], "heldout": [...]}``: :data:`HELDOUT_SHARE` of the texts held out at random."""
    splits = {}
    for name, texts in sources.items():
        order = list(range(len(texts)))
        random.Random(f"{seed}-{name}").shuffle(order)
        n_held = max(20, round(HELDOUT_SHARE * len(texts)))
        held = set(order[:n_held])
        splits[name] = {"train": [t for i, t in enumerate(texts) if i not in held],
                        "heldout": [t for i, t in enumerate(texts) if i in held]}
    return splits


def capture_stage(model, work: Path, splits: dict, layer: int) -> dict[tuple[str, str], Path]:
    """Capture every (source, split) at ``layer`` (resumable stores; texts sorted by token count)."""
    from steerlab.capture import capture

    directories = {}
    for name, parts in splits.items():
        for split, texts in parts.items():
            directory = work / "capture" / f"L{layer}-{name}-{split}"
            ordered = sorted(texts, key=lambda text: (len(model.tokenizer(text)["input_ids"]), text))
            dtype = torch.bfloat16 if split == "train" else torch.float32  # 2 bytes a value for the big part
            capture(model, ordered, layers=[layer], site="resid_post", position="all", batch_size=32,
                    out=directory, dtype=dtype, shard_size=512)
            directories[(name, split)] = directory
    return directories


def token_rows(directory: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(activations [n_tokens, d], token index [n_tokens], text index [n_tokens])`` of a stored capture."""
    from steerlab.capture import Activations

    acts = Activations.load(directory)
    values = acts.values[:, 0]
    return values, acts.token_index, acts.sequence_index


def training_rows(directories: dict, median_norm: float) -> tuple[torch.Tensor, dict]:
    """Every train token after the first, massive-norm tokens dropped; and the counts per source."""
    rows, counts = [], {}
    for (name, split), directory in directories.items():
        if split != "train":
            continue
        values, token, _ = token_rows(directory)
        norms = values.float().norm(dim=-1)
        later = token >= 1
        keep = later & (norms <= MASSIVE_NORM_FACTOR * median_norm)
        rows.append(values[keep])
        counts[name] = {"texts": int((token == 0).sum()), "tokens_after_first": int(later.sum()),
                        "massive_dropped": int((later & ~keep).sum()), "training_rows": int(keep.sum())}
    return torch.cat(rows), counts


def median_later_norm(directories: dict) -> float:
    """The median residual norm of tokens after the first, over the held-out captures (the massive-token scale)."""
    norms = []
    for (name, split), directory in directories.items():
        if split == "heldout":
            values, token, _ = token_rows(directory)
            norms.append(values[token >= 1].float().norm(dim=-1))
    return float(torch.cat(norms).median())


def evaluate(model, sae, directories: dict, splits: dict, median_norm: float, ce_texts: int) -> dict:
    """Held-out quality: reconstruction per source and overall (after the first token, with and without the
    massive tokens, and with the first token for comparison), and CE loss spliced in on ``ce_texts`` per source."""
    from steerlab.sae.quality import ce_losses, reconstruction_metrics

    per_source, all_rows, typical_rows, with_first = {}, [], [], []
    for (name, split), directory in directories.items():
        if split != "heldout":
            continue
        values, token, _ = token_rows(directory)
        later = values[token >= 1]
        typical = later[later.norm(dim=-1) <= MASSIVE_NORM_FACTOR * median_norm]
        per_source[name] = {**reconstruction_metrics(sae, typical),
                            "massive_tokens": len(later) - len(typical)}
        all_rows.append(later), typical_rows.append(typical), with_first.append(values)
    quality = {"after_first_token": reconstruction_metrics(sae, torch.cat(all_rows)),
               "after_first_token_without_massive": reconstruction_metrics(sae, torch.cat(typical_rows)),
               "every_token_including_first": reconstruction_metrics(sae, torch.cat(with_first)),
               "per_source": per_source}
    texts = [text for parts in splits.values() for text in parts["heldout"][:ce_texts]]
    quality["ce"] = {**ce_losses(model, sae, texts), "texts": len(texts)}
    return quality


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to save the SAE (sae-lens format + card)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "steerlab" / "real-sae-work",
                        help="samples and captured activations (resumable; about 0.5 GB)")
    parser.add_argument("--stage", choices=("sample", "capture", "all"), default="all",
                        help="stop after this stage (each one resumes from --work)")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--samples", type=int, default=320)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--sample-batch", type=int, default=32)
    parser.add_argument("--d-sae", type=int, default=2304)
    parser.add_argument("--k", type=int, default=48)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ce-texts", type=int, default=48, help="held-out texts per source for the CE loss")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import steerlab
    from steerlab.output_folder import check_output, staged_output
    from steerlab.sae.training import train_sae_on_activations

    command = "python benchmarks/train_real_sae.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.stage == "all":
        check_output(args.out, overwrite=False)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = steerlab.load_model(MODEL)
    samples = sample_stage(model, args.work, args.samples, args.max_new_tokens, args.sample_batch, args.seed)
    print(f"{len(samples)} samples, {sum(s['new_tokens'] for s in samples)} new tokens")
    if args.stage == "sample":
        return
    splits = split_corpus(source_texts(samples), args.seed)
    directories = capture_stage(model, args.work, splits, args.layer)
    if args.stage == "capture":
        return
    median_norm = median_later_norm(directories)
    rows, counts = training_rows(directories, median_norm)
    print(json.dumps(counts, indent=1), f"\n{len(rows)} training rows; median norm {median_norm:.1f}")
    train_started = time.perf_counter()
    sae = train_sae_on_activations(rows, hook_name=f"blocks.{args.layer}.hook_resid_post", model_name=MODEL,
                                   prepend_bos=False, d_sae=args.d_sae, k=args.k, steps=args.steps,
                                   batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    train_seconds = time.perf_counter() - train_started
    quality = evaluate(model, sae, directories, splits, median_norm, args.ce_texts)
    card = {
        "command": f"nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/{command}",
        "model": MODEL, "hook_name": sae.cfg.metadata.hook_name, "architecture": "topk", "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae, "k": args.k, "dtype": "float32",
        "valid_positions": (
            "every token after the first of plain text or chat-formatted text (SmolLM2's <|im_start|>user / "
            "assistant turns; the default system turn was not in the training text); the first token (the "
            "attention sink, residual norm ~130x the median) is outside its training data, as are the rare "
            "second-token sinks of plain text whose first "
            f"word is split into pieces (norm > {MASSIVE_NORM_FACTOR:g}x the median; dropped from training). "
            "steerlab's SAE helpers skip the first token by default (skip_first=True)."),
        "median_token_norm": round(median_norm, 2), "massive_norm_factor": MASSIVE_NORM_FACTOR,
        "corpus": {name: {**counts[name], "heldout_texts": len(parts["heldout"])} for name, parts in splits.items()},
        "samples": {"texts": len(samples), "new_tokens": sum(s["new_tokens"] for s in samples),
                    "kinds": {kind: sum(s["kind"] == kind for s in samples) for kind in ("topic", "city", "plain")},
                    "sampling": "temperature 1.0, top-p 0.95, torch.manual_seed per batch"},
        "training": {"rows": len(rows), "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                     "epochs": round(args.steps * args.batch_size / len(rows), 2), "seconds": round(train_seconds),
                     "threads": args.threads, "trainer": "sae_lens SAETrainer (TopK, AuxK loss), Adam, cosine decay"},
        "quality_heldout": quality, "total_seconds": round(time.perf_counter() - started),
        "ce_loss_recovered_baseline": "mean ablation of the site (sae-lens' CE loss score uses zero ablation)",
        "versions": {"torch": torch.__version__, "sae_lens": __import__("sae_lens").__version__,
                     "steerlab": steerlab.__version__},
    }
    with staged_output(args.out, overwrite=False) as work:
        sae.save_model(work)
        (work / "card.json").write_text(json.dumps(card, indent=1, default=float))
    print(json.dumps(card["quality_heldout"], indent=1, default=float))


if __name__ == "__main__":
    main()

"""Capture speed against a plain no-hook transformers forward, and streaming memory.

Both runs see the same batches (same texts, same length-sorted order, same padding)
in one process, alternating, so the ratio is robust to machine load.

    python benchmarks/bench_capture.py [--threads 1]   # speed table per backend
    python benchmarks/bench_capture.py --rss 2000 20000   # peak RSS streaming N texts to disk

Results are appended to benchmarks/results.md by hand (see that file); the real models'
capture ratios are benchmarks/bench_capture_real.py's (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch


def make_model(directory: str, n_layers: int = 6, d_model: int = 256, vocab: int = 2000) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_embd=d_model, n_layer=n_layers, n_head=8, n_positions=128)
    GPT2LMHeadModel(config).save_pretrained(directory)
    words = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab - 2)}}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>").save_pretrained(directory)


def make_texts(n: int, seed: int = 0) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 48, (n,), generator=generator)
    return [" ".join(f"w{int(w)}" for w in torch.randint(0, 1990, (int(k),), generator=generator)) for k in lengths]


def bench_speed(directory: str, n_texts: int, batch_size: int, repeats: int) -> None:
    """Capture of every layer against a plain logits forward over the same batches, per backend.

    Rounds alternate the two; the ratio is the median over rounds of capture / plain in the
    same round, in wall-clock and in process CPU time.
    """
    import statistics

    import steerlab
    from steerlab.models.tokenization import encode, pad

    texts = make_texts(n_texts)
    print("| backend | capture s | plain forward s | ratio (wall) | ratio (CPU time) |\n|---|---|---|---|---|")
    for backend in ["hf", "transformer_lens", "nnsight"]:
        model = steerlab.load_model(directory, backend=backend)
        ids = encode(model.tokenizer, texts, max_length=model.context_length)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = [pad([ids[i] for i in order[s:s + batch_size]], pad_id=model.pad_token_id, side="right")
                   for s in range(0, len(order), batch_size)]
        plain_model = steerlab.load_model(directory, backend="hf").hf_model  # a separate, hook-free copy

        def plain() -> None:
            with torch.no_grad():
                for batch in batches:
                    plain_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

        def ours() -> None:
            steerlab.capture(model, texts, layers=None, batch_size=batch_size, progress=False)

        ours(), plain()  # warm-up
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "plain": []}
        for _ in range(repeats):
            for name, fn in (("ours", ours), ("plain", plain)):
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        ratio = [statistics.median(o[k] / p[k] for o, p in zip(times["ours"], times["plain"])) for k in (0, 1)]
        print(f"| {backend} | {statistics.median(t[0] for t in times['ours']):.3f} | "
              f"{statistics.median(t[0] for t in times['plain']):.3f} | {ratio[0]:.2f}x | {ratio[1]:.2f}x |")


def bench_rss(directory: str, n_texts: int) -> None:
    """Run in a child process: stream n_texts to disk, print peak RSS."""
    import steerlab

    model = steerlab.load_model(directory)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        steerlab.capture(model, make_texts(n_texts), layers=None, batch_size=64, out=f"{out}/store",
                         shard_size=1024, progress=False)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stored_mb = n_texts * model.n_layers * model.d_model * 4 / 2**20
    print(f"| {n_texts} | {peak_mb:.0f} | {stored_mb:.0f} | {seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--rss", type=int, nargs="*", help="text counts for the streaming-memory benchmark")
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child-rss", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_rss:
        bench_rss(args.model_dir, args.child_rss)
        return
    with tempfile.TemporaryDirectory() as directory:
        make_model(directory)
        if args.rss:
            print("| texts | peak RSS MB | activations on disk MB | seconds |\n|---|---|---|---|")
            for n in args.rss:
                # A fresh process per size, so each peak RSS is its own.
                subprocess.run([sys.executable, __file__, "--model-dir", directory, "--child-rss", str(n)], check=True)
        else:
            from bench_generation import machine_line

            print(machine_line(args.threads))
            bench_speed(directory, args.texts, args.batch_size, args.repeats)
            print(machine_line(args.threads))


if __name__ == "__main__":
    main()

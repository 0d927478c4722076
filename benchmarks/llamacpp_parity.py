"""llama.cpp with a steerlab control vector vs steerlab's steered forward, on the same GGUF model.

Not part of CI: it needs llama-cpp-python, which builds llama.cpp from source (a separate venv).

    # once: a venv with llama-cpp-python (+ the pure-Python gguf package) and the model's GGUF file
    python -m venv /tmp/llamacpp-venv && /tmp/llamacpp-venv/bin/pip install llama-cpp-python==0.3.36 gguf
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llamacpp_parity.py --llama-python /tmp/llamacpp-venv/bin/python \
        --gguf /tmp/llamacpp-build/SmolLM2-135M-Instruct.Q4_1.gguf

The GGUF is the file ``steerlab models pull smollm2-135m-instruct`` converts (its sha256 is checked), so
both sides run the same weights: steerlab the dequantised float32 weights with transformers, llama.cpp the
Q4_1 weights with its own kernels. For each prompt the next-token logits are compared without and with
the control vector, and the steering effect (steered - unsteered logits) of each side is compared. A
control moves the steerlab vector one block earlier / later, to show the comparison can tell layers apart.

llama-cpp-python exposes llama.cpp's C API but not the control-vector file loader (that is in llama.cpp's
``common`` library), so the llama.cpp half reads the file the way ``common_control_vector_load_one`` does
(``direction.N`` -> rows ``N - 1`` of one buffer, strength 1) and hands the buffer to
``llama_set_adapter_cvec`` for layers 1..n_layer, as ``--control-vector FILE`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

LLAMA_SIDE = textwrap.dedent("""
    import json, sys, ctypes
    import numpy as np
    import gguf, llama_cpp
    from llama_cpp import Llama

    job = json.load(open(sys.argv[1]))
    llm = Llama(model_path=job["gguf"], n_ctx=256, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False,
                n_gpu_layers=0)
    n_embd, n_layer = llm.n_embd(), llama_cpp.llama_model_n_layer(llm.model)

    def control_buffer(path):  # as llama.cpp's common_control_vector_load_one, strength 1
        reader = gguf.GGUFReader(path)
        directions = {int(t.name.split(".")[1]): np.asarray(t.data, dtype=np.float32) for t in reader.tensors
                      if t.name.startswith("direction.")}
        buffer = np.zeros((max(directions), n_embd), dtype=np.float32)
        for layer, direction in directions.items():
            buffer[layer - 1] = direction
        return np.ascontiguousarray(buffer.reshape(-1))

    def last_logits(tokens):
        llm.reset()
        llm.eval(tokens)
        return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)

    out = {"n_embd": n_embd, "n_layer": n_layer, "llama_cpp_python": llama_cpp.__version__, "plain": [],
           "steered": {}}
    for tokens in job["tokens"]:
        out["plain"].append(last_logits(tokens).tolist())
    for name, path in job["vectors"].items():
        buffer = control_buffer(path)
        pointer = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        status = llama_cpp.llama_set_adapter_cvec(llm.ctx, pointer, buffer.size, n_embd, 1, n_layer)
        assert status == 0, f"llama_set_adapter_cvec failed ({status})"
        out["steered"][name] = [last_logits(tokens).tolist() for tokens in job["tokens"]]
        llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, -1, -1)  # off again
    json.dump(out, open(sys.argv[2], "w"))
""")

PROMPTS = ["The weather today is", "I think this movie was", "My favourite food is", "The capital of France is",
           "When I woke up this morning, I felt"]
POSITIVE = ["I love this, it is wonderful and makes me happy.", "What a great and delightful day!",
            "This is fantastic, I am thrilled."]
NEGATIVE = ["I hate this, it is awful and makes me sad.", "What a terrible and miserable day!",
            "This is horrible, I am furious."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-python", required=True, help="the python of a venv with llama-cpp-python and gguf")
    parser.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf (the file steerlab converts)")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--alpha", type=float, default=3.0)
    args = parser.parse_args()

    import steerlab
    from steerlab.models.registry import MODELS
    from steerlab.steering import SteeringVector

    torch.set_num_threads(1)
    digest = hashlib.sha256(Path(args.gguf).read_bytes()).hexdigest()
    assert digest == MODELS["smollm2-135m-instruct"].sha256, "not the GGUF steerlab's smollm2-135m-instruct comes from"
    model = steerlab.load_model("smollm2-135m-instruct")
    caa = SteeringVector.from_contrast_pairs(model, POSITIVE, NEGATIVE, layer=args.layer)
    cases = {f"CAA at layer {args.layer}, alpha {args.alpha}": (caa, args.alpha),
             f"CAA at layers 8..22, alpha {args.alpha / 10:g}": (caa.at(list(range(8, 23))), args.alpha / 10)}
    batches = [model.tokenize([prompt]) for prompt in PROMPTS]  # one prompt each: no padding
    tokens = [batch.input_ids[0].tolist() for batch in batches]

    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: str(vector.to_gguf(Path(scratch) / f"v{i}.gguf", alpha=alpha, model=model))
                 for i, (name, (vector, alpha)) in enumerate(cases.items())}
        job = Path(scratch) / "job.json"
        job.write_text(json.dumps({"gguf": args.gguf, "tokens": tokens, "vectors": paths}))
        result_path = Path(scratch) / "out.json"
        subprocess.run([args.llama_python, "-c", LLAMA_SIDE, str(job), str(result_path)], check=True)
        llama = json.loads(result_path.read_text())

    def logits(vectors=(), alpha=1.0):
        rows = []
        for batch in batches:
            with steerlab.steer(model, list(vectors), alpha=alpha) if vectors else contextlib.nullcontext(), \
                    torch.no_grad():
                rows.append(model.forward(batch)[0, -1].double().numpy())
        return np.stack(rows)

    plain_s, plain_l = logits(), np.array(llama["plain"])
    print(f"# llama.cpp vs steerlab, SmolLM2-135M-Instruct Q4_1 GGUF ({len(PROMPTS)} prompts)\n")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; llama-cpp-python "
          f"{llama['llama_cpp_python']} (n_threads=1); CPU {_cpu()}; llama.cpp n_layer {llama['n_layer']}, "
          f"n_embd {llama['n_embd']}\n")
    print("| case | max abs logit diff (llama.cpp - steerlab) | argmax agree | cos(effect_llama.cpp, effect_steerlab) "
          "| rel. error of effect | control: steerlab one block earlier / later: cos, rel. error |")
    print("|---|---|---|---|---|---|")
    print(f"| no control vector | {np.abs(plain_l - plain_s).max():.3f} | "
          f"{_agree(plain_l, plain_s)} | - | - | - |")
    for name, (vector, alpha) in cases.items():
        steered_s, steered_l = logits([vector], alpha), np.array(llama["steered"][name])
        effect_s, effect_l = steered_s - plain_s, steered_l - plain_l
        shifted = [logits([vector.at([layer + shift for layer in vector.layers])], alpha) - plain_s
                   for shift in (-1, 1)]
        print(f"| {name} | {np.abs(steered_l - steered_s).max():.3f} | {_agree(steered_l, steered_s)} | "
              f"{_cos(effect_l, effect_s):.4f} | {_relative_error(effect_l, effect_s):.3f} | "
              f"{_cos(effect_l, shifted[0]):.4f}, {_relative_error(effect_l, shifted[0]):.3f} / "
              f"{_cos(effect_l, shifted[1]):.4f}, {_relative_error(effect_l, shifted[1]):.3f} |")
    print("\nEffect = steered - unsteered next-token logits of all prompts, flattened; cos = cosine similarity; "
          "rel. error = |effect_llama.cpp - effect_steerlab| / |effect_steerlab|.")


def _agree(a: np.ndarray, b: np.ndarray) -> str:
    return f"{int((a.argmax(-1) == b.argmax(-1)).sum())}/{len(a)}"


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _relative_error(llama: np.ndarray, steerlab_effect: np.ndarray) -> float:
    return float(np.linalg.norm(llama - steerlab_effect) / np.linalg.norm(steerlab_effect))


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


if __name__ == "__main__":
    main()

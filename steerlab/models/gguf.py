"""GGUF files -> save_pretrained folders in steerlab's cache (dequantised float32 weights + tokenizer).

transformers reads GGUF files (``from_pretrained(dir, gguf_file=name)``), but slowly: every
load dequantises every tensor and rebuilds the tokenizer from the file's metadata (42 s for
SmolLM2-135M, 120 s for Gemma-3-270M on 2 cores). :func:`convert_gguf` does that once and
saves the result as an ordinary safetensors folder keyed by the file's sha256, which later
loads read in seconds::

    folder = convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")   # first call: converts (progress shown)
    folder = convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")   # later calls: the cached folder
    read_provenance(folder)   # {"source": "SmolLM2-...gguf", "sha256": "...", "quantisation": "Q4_1", ...}

The folder is built in a hidden sibling (``.<sha256>.steerlab-partial-<pid>``) and renamed into place
at the end, so an interrupted or killed conversion never leaves a half entry.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from steerlab.models.cache import PROVENANCE_FILE, file_sha256, gguf_entry, is_complete
from steerlab.output_folder import staged_output

GGUF_MAGIC = b"GGUF"
PROVENANCE_FORMAT = "steerlab-gguf-conversion/1"


def check_gguf_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path after checking it is a GGUF file (exists, starts with the ``GGUF`` magic bytes).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not GGUF (e.g. a safetensors file or a download error page).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No GGUF file at {path}.")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file: it starts with {magic!r}, not {GGUF_MAGIC!r}. Pass a .gguf "
                         "file (llama.cpp's format), or a save_pretrained folder for other formats.")
    return path


def find_gguf(folder: str | os.PathLike) -> Path:
    """The one ``.gguf`` file in ``folder``.

    Raises:
        FileNotFoundError: the folder holds no .gguf file.
        ValueError: it holds several (pass the file you mean instead).
    """
    folder = Path(folder).expanduser()
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"{folder} holds no .gguf file and no config.json: pass a GGUF file, a folder "
                                "holding exactly one, or a save_pretrained folder.")
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ValueError(f"{folder} holds {len(found)} GGUF files ({names}): pass the path of the one to load, "
                         f"e.g. {found[0]}.")
    return found[0]


def require_gguf_package() -> Any:
    """The ``gguf`` module, or an ImportError naming the fix."""
    try:
        import gguf
    except ImportError as error:
        raise ImportError("Reading GGUF files needs the `gguf` package (pure Python): pip install gguf") from error
    return gguf


def read_gguf_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """What a GGUF says about itself, read from its header only (no tensor data).

    Returns:
        ``{"architecture": str (llama.cpp's name, e.g. "llama", "gemma3"), "name": str | None
        (general.name), "quantisation": str | None (general.file_type, e.g. "Q4_1", "Q4_K_M"),
        "tensor_types": {ggml type: count}}``.

    The gguf package names the value and tensor types; the header is walked here with
    ``struct`` because ``gguf.GGUFReader`` builds a numpy view per vocabulary entry (tens of
    seconds for Gemma's 262k tokens), which this does not need.
    """
    gguf = require_gguf_package()
    scalars, tensor_types = _scan_header(Path(path), gguf)
    file_type = scalars.get("general.file_type")
    quantisation = None
    if file_type is not None:
        try:
            quantisation = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            quantisation = f"file_type {file_type}"
    return {
        "architecture": scalars.get("general.architecture"),
        "name": scalars.get("general.name"),
        "quantisation": quantisation,
        "tensor_types": dict(Counter(_type_name(gguf, kind) for kind in tensor_types).most_common()),
    }


def _scan_header(path: Path, gguf: Any) -> tuple[dict[str, Any], list[int]]:
    """``(scalar metadata by key, ggml type id of each tensor)``; arrays are skipped, not read."""
    import mmap
    import struct

    kinds = gguf.GGUFValueType
    fixed = {kinds.UINT8: "B", kinds.INT8: "b", kinds.BOOL: "?", kinds.UINT16: "H", kinds.INT16: "h",
             kinds.UINT32: "I", kinds.INT32: "i", kinds.FLOAT32: "f", kinds.UINT64: "Q", kinds.INT64: "q",
             kinds.FLOAT64: "d"}
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        pos = 4 + 4  # magic, version

        def take(fmt: str) -> Any:
            nonlocal pos
            values = struct.unpack_from("<" + fmt, blob, pos)
            pos += struct.calcsize("<" + fmt)
            return values[0] if len(values) == 1 else values

        def string() -> str:
            nonlocal pos
            length = take("Q")
            pos += length
            return bytes(blob[pos - length:pos]).decode("utf-8", errors="replace")

        def skip(kind: int, count: int) -> None:
            nonlocal pos
            if kind in fixed:
                pos += struct.calcsize(fixed[kind]) * count
            elif kind == kinds.STRING:
                for _ in range(count):
                    length = take("Q")  # (not `pos += take(...)`: take moves pos itself)
                    pos += length
            else:
                raise ValueError(f"{path.name}: unsupported GGUF value type {kind} in a metadata array.")

        tensor_count, kv_count = take("QQ")
        scalars: dict[str, Any] = {}
        for _ in range(kv_count):
            key, kind = string(), take("I")
            if kind == kinds.STRING:
                scalars[key] = string()
            elif kind in fixed:
                scalars[key] = take(fixed[kind])
            elif kind == kinds.ARRAY:
                item_kind, count = take("I"), take("Q")
                skip(item_kind, count)
            else:
                raise ValueError(f"{path.name}: unsupported GGUF value type {kind} for {key}.")
        tensor_types = []
        for _ in range(tensor_count):
            string()
            dims = take("I")
            pos += 8 * dims
            tensor_types.append(take("I"))
            pos += 8  # data offset
    return scalars, tensor_types


def _type_name(gguf: Any, kind: int) -> str:
    try:
        return gguf.GGMLQuantizationType(kind).name
    except ValueError:
        return f"type {kind}"


def convert_gguf(path: str | os.PathLike, *, sha256: str | None = None, model_name: str | None = None,
                 progress: bool = True) -> Path:
    """Convert a GGUF file into a save_pretrained folder in steerlab's cache; later calls read the cache.

    Args:
        path: a ``.gguf`` file (or a folder holding exactly one).
        sha256: the file's sha256 when the caller has already computed it (skips hashing).
        model_name: the registry name the file was pulled as (recorded in the provenance).
        progress: print a line per phase and show progress bars (hashing, dequantising).

    Returns:
        The cache folder (``$STEERLAB_CACHE/gguf/<sha256>``): ``config.json``, float32
        ``model.safetensors``, the tokenizer files and ``steerlab-source.json``.

    Raises:
        ImportError: the ``gguf`` package is missing (the message says ``pip install gguf``).
        ValueError: not a GGUF file, several GGUF files in the folder, or an architecture or
            tokenizer this transformers cannot read from GGUF (named in the message).
    """
    path = Path(path).expanduser()
    path = check_gguf_file(find_gguf(path) if path.is_dir() else path)
    require_gguf_package()
    sha256 = sha256 or file_sha256(path, progress=progress)
    entry = gguf_entry(sha256)
    if is_complete(entry):
        return entry
    say = _printer(progress)
    metadata = read_gguf_metadata(path)
    started = time.perf_counter()
    try:
        with staged_output(entry, overwrite=False) as partial:  # built aside: a killed run leaves no entry
            architecture = _convert_into(path, partial, metadata, say)
            provenance = {
                "format": PROVENANCE_FORMAT,
                "source": path.name,
                "sha256": sha256,
                "size_bytes": path.stat().st_size,
                "quantisation": metadata["quantisation"],
                "tensor_types": metadata["tensor_types"],
                "architecture": metadata["architecture"],
                "hf_architecture": architecture,
                "gguf_name": metadata["name"],
                "model": model_name,
                "dtype": "float32",
                "converted_with": _versions(),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (partial / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    except FileExistsError:
        if not is_complete(entry):  # not a concurrent conversion that finished first
            raise
    say(f"steerlab: converted {path.name} in {time.perf_counter() - started:.0f} s -> {entry}")
    return entry


def _convert_into(path: Path, folder: Path, metadata: dict[str, Any], say: Any) -> str:
    """Load the GGUF with transformers and save it into ``folder``; returns the HF architecture class name."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    architecture = metadata["architecture"]
    try:
        say(f"steerlab: converting {path.name} ({architecture}, {metadata['quantisation']}) into the cache, once")
        say("steerlab: [1/3] tokenizer from the GGUF metadata")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        say("steerlab: [2/3] weights, dequantised to float32")
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as error:
        import transformers

        raise ValueError(
            f"transformers {transformers.__version__} cannot read GGUF architecture {architecture!r} "
            f"(from {path.name}): {error}. Try a newer transformers (pip install -U transformers), or load "
            "the original model (a hub id or a save_pretrained folder) instead of the GGUF."
        ) from error
    say("steerlab: [3/3] writing safetensors")
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf and is not serializable"),
    # although its weights are plain float32 tensors by now: drop the quantizer marks first.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return (model.config.architectures or [type(model).__name__])[0]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("steerlab", "transformers", "gguf", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _printer(progress: bool) -> Any:
    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    return say

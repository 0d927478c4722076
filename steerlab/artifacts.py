"""Saving and loading steerlab artifacts: safetensors tensors + a JSON metadata file.

Every artifact (probe, token probe, steering vector) is two files side by side,
``NAME.safetensors`` and ``NAME.json``. The JSON records what the tensors mean (``kind``,
the model and its source, site, layer(s), position, d_model, the steerlab version and
format, plus the artifact's own fields). Nothing is pickled and nothing loaded can
execute code.

Names: only a trailing ``.safetensors`` or ``.json`` is a suffix; ``"b.layer1"`` and
``"raptor_C0.5"`` are kept whole (``raptor_C0.5.safetensors`` + ``raptor_C0.5.json``).

Writing never follows a symlink (a symlinked target or parent folder is refused), goes
through a temporary file in the same folder renamed into place (a crash never leaves a
half-written artifact), and with ``overwrite=False`` never replaces an existing file.

Reading validates everything against a small schema per kind (:data:`SCHEMAS`): the JSON
must be an object with the required, well-typed fields; the tensors must be exactly the
expected names, with the shapes the metadata implies, the expected dtypes and finite
values. Every failure is an :class:`ArtifactError` naming the file and the problem.

Example:
    >>> import torch, tempfile, os
    >>> from steerlab.artifacts import save_artifact, load_artifact
    >>> path = os.path.join(tempfile.mkdtemp(), "v")
    >>> meta = {"site": "resid_post", "layers": [2], "model": None, "d_model": 4, "probe_weight_norm": None,
    ...         "probe_intercept": None, "typical_norm": None, "provenance": {}}
    >>> _ = save_artifact(path, {"direction": torch.ones(4)}, meta, kind="steering_vector")
    >>> tensors, meta = load_artifact(path, kind="steering_vector")
    >>> meta["layers"], tensors["direction"].shape
    ([2], torch.Size([4]))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as deserialize_tensors
from safetensors.torch import save as serialize_tensors

FORMAT_VERSION = 1  # bump when a change makes older steerlab versions misread new artifacts
SUFFIXES = (".safetensors", ".json")


class ArtifactError(ValueError):
    """A steerlab artifact that cannot be written or read; the message names the file and the problem."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """A missing ``.safetensors`` or ``.json`` file (also a FileNotFoundError, for older callers)."""


def artifact_error(file: Path, problem: str, cls: type[ArtifactError] = ArtifactError) -> ArtifactError:
    """``ArtifactError("PATH/NAME.json: problem")``: the one message format of every artifact failure."""
    return cls(f"{file}: {problem}")


# ------------------------------------------------------------------ schema


@dataclass(frozen=True)
class FieldType:
    """A JSON value type: ``name`` for messages ("a positive int"), ``accepts`` the test."""

    name: str
    accepts: Callable[[Any], bool]

    def or_null(self) -> "FieldType":
        """The same type, or ``null``."""
        return FieldType(f"{self.name} or null", lambda value: value is None or self.accepts(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


ANY = FieldType("any JSON value", lambda value: True)
STR = FieldType("a string", lambda value: isinstance(value, str))
BOOL = FieldType("true or false", lambda value: isinstance(value, bool))
INT = FieldType("an int", _is_int)
COUNT = FieldType("an int >= 0", lambda value: _is_int(value) and value >= 0)
POSITIVE_INT = FieldType("a positive int", lambda value: _is_int(value) and value > 0)
NUMBER = FieldType("a number", _is_number)
FINITE_NUMBER = FieldType("a finite number", lambda value: _is_number(value) and math.isfinite(value))
OBJECT = FieldType("a JSON object", lambda value: isinstance(value, dict))
LIST = FieldType("a list", lambda value: isinstance(value, list))
INT_LIST = FieldType("a list of ints", lambda value: isinstance(value, list) and all(map(_is_int, value)))
LAYER_LIST = FieldType("a non-empty list of ints",
                       lambda value: INT_LIST.accepts(value) and len(value) > 0)
LABEL_PAIR = FieldType("a list of two class labels", lambda value: isinstance(value, list) and len(value) == 2
                       and all(isinstance(v, (str, int, float)) for v in value))


@dataclass(frozen=True)
class FieldSpec:
    """A metadata field: its type, and whether it must be present (new fields are optional for older files)."""

    type: FieldType
    required: bool = True


LAYER_AXIS = "n_layers?"  # a leading axis of length n_layers, absent when the metadata's n_layers is null


@dataclass(frozen=True)
class TensorSpec:
    """An expected tensor.

    ``shape``: ints, metadata field names, :data:`LAYER_AXIS`, and ``...`` last for any
    trailing axes. ``dtypes``: those allowed. ``required``: must be present (else optional).
    ``when``: if given, the tensor is required when ``when(metadata)`` is true and must be
    absent otherwise (e.g. a scaler saved only for a standardised probe).
    """

    shape: tuple[Any, ...] = (...,)
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)
    required: bool = True
    when: Callable[[dict[str, Any]], bool] | None = None


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Schema:
    """What one kind of artifact holds: JSON ``fields``, ``tensors`` (more may come from the loader), the
    field naming its model, and cross-field ``checks`` (each returns a problem or None)."""

    noun: str
    fields: Mapping[str, FieldSpec]
    tensors: Mapping[str, TensorSpec]
    model_field: str
    checks: tuple[Callable[[dict[str, Any]], str | None], ...] = field(default=())


COMMON_FIELDS: dict[str, FieldSpec] = {
    "kind": FieldSpec(STR),
    "steerlab_version": FieldSpec(STR),
    "format_version": FieldSpec(POSITIVE_INT, required=False),  # absent in artifacts of format 1
    "model_source": FieldSpec(STR.or_null(), required=False),
    "model_provenance": FieldSpec(OBJECT.or_null(), required=False),  # a GGUF-converted model's file, sha256...
    "tensors_sha256": FieldSpec(STR, required=False),  # of the .safetensors file: a mismatched pair is refused
}


def _layers_match_n_layers(meta: dict[str, Any]) -> str | None:
    layers, n_layers = meta.get("layers"), meta.get("n_layers")
    if layers is not None and n_layers is not None and len(layers) != n_layers:
        return f"field 'layers' lists {len(layers)} layers but field 'n_layers' is {n_layers}"
    return None


def _standardized(meta: dict[str, Any]) -> bool:
    return meta["standardized"]


def _token_standardized(meta: dict[str, Any]) -> bool:
    return meta["params"].get("normalize", "standardize") == "standardize"


SCHEMAS: dict[str, Schema] = {
    "probe": Schema(
        noun="probe",
        fields={"class": FieldSpec(STR), "params": FieldSpec(OBJECT), "model": FieldSpec(STR.or_null()),
                "site": FieldSpec(STR.or_null()), "layers": FieldSpec(INT_LIST.or_null()),
                "position": FieldSpec(ANY), "d_model": FieldSpec(POSITIVE_INT),
                "n_layers": FieldSpec(POSITIVE_INT.or_null()), "classes": FieldSpec(LABEL_PAIR),
                "chosen_C": FieldSpec(ANY, required=False), "metrics": FieldSpec(OBJECT),
                "standardized": FieldSpec(BOOL)},
        tensors={"coef_": TensorSpec((LAYER_AXIS, "d_model")), "intercept_": TensorSpec((LAYER_AXIS,)),
                 "concept_vector_": TensorSpec((LAYER_AXIS, "d_model")),
                 "mean_": TensorSpec((LAYER_AXIS, "d_model"), when=_standardized),
                 "scale_": TensorSpec((LAYER_AXIS, "d_model"), when=_standardized),
                 "activation_norm_": TensorSpec((LAYER_AXIS,), required=False)},  # absent in older files
        model_field="model",
        checks=(_layers_match_n_layers,)),
    "token_probe": Schema(
        noun="token probe",
        fields={"class": FieldSpec(STR), "params": FieldSpec(OBJECT), "d_model": FieldSpec(POSITIVE_INT),
                "classes": FieldSpec(LABEL_PAIR), "threshold": FieldSpec(FINITE_NUMBER),
                "best_epoch": FieldSpec(COUNT), "n_epochs": FieldSpec(COUNT), "val_auroc": FieldSpec(NUMBER),
                "history": FieldSpec(LIST), "layer": FieldSpec(INT.or_null()), "site": FieldSpec(STR.or_null()),
                "model_name": FieldSpec(STR.or_null()), "position": FieldSpec(ANY, required=False)},
        tensors={"mean_": TensorSpec(("d_model",), FLOATS, when=_token_standardized),
                 "scale_": TensorSpec(("d_model",), FLOATS, when=_token_standardized)},
        model_field="model_name"),
    "steering_vector": Schema(
        noun="steering vector",
        fields={"site": FieldSpec(STR), "layers": FieldSpec(LAYER_LIST), "model": FieldSpec(STR.or_null()),
                "d_model": FieldSpec(POSITIVE_INT), "probe_weight_norm": FieldSpec(FINITE_NUMBER.or_null()),
                "probe_intercept": FieldSpec(FINITE_NUMBER.or_null()),
                "typical_norm": FieldSpec(FINITE_NUMBER.or_null()), "provenance": FieldSpec(OBJECT),
                "position": FieldSpec(ANY, required=False)},
        tensors={"direction": TensorSpec(("d_model",))},
        model_field="model"),
}


# ------------------------------------------------------------------ names


def artifact_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)``; only a trailing ``.safetensors`` / ``.json`` is dropped from ``path``."""
    base = Path(path)
    if base.suffix in SUFFIXES:
        base = base.with_suffix("")
    if not base.name:
        raise ArtifactError(f"{os.fspath(path)!r} is not an artifact name: give a file name such as 'probe'.")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def model_source(model_name: str | None, model_provenance: Mapping[str, Any] | None = None) -> str | None:
    """Where a model of this name came from, as the adapters name models: ``"gguf"`` (converted from a
    GGUF file: ``model_provenance`` says which), ``"demo"``, ``"local"`` (an absolute directory path) or
    ``"hub"`` (a hub id); None without a model."""
    if model_provenance:
        return "gguf"
    if model_name is None:
        return None
    if model_name == "demo":
        return "demo"
    return "local" if os.path.isabs(model_name) else "hub"


# ------------------------------------------------------------------ writing


def save_artifact(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], *,
                  kind: str, overwrite: bool = False) -> Path:
    """Write ``NAME.safetensors`` + ``NAME.json`` and return the ``.safetensors`` path.

    Refuses symlinks (either file or the folder), replaces existing files only with
    ``overwrite=True``, and writes each file to a temporary file renamed into place, the
    JSON last: a crash leaves no file half-written; a crash between the two renames of an
    overwrite leaves new tensors beside the old JSON, which loading refuses (the JSON
    records the sha256 of its tensors file).
    """
    from steerlab._version import __version__

    schema = _schema(kind)
    tensor_path, json_path = artifact_paths(path)
    _check_writable(tensor_path, json_path, overwrite)
    data = serialize_tensors({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})
    header = {"kind": kind, "format_version": FORMAT_VERSION, "steerlab_version": __version__,
              "model_source": model_source(metadata.get(schema.model_field), metadata.get("model_provenance")),
              "tensors_sha256": hashlib.sha256(data).hexdigest()}
    payload = header | {key: value for key, value in metadata.items() if key not in header}
    text = json.dumps(payload, indent=1, default=_json_default)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    _write_file(tensor_path, data, overwrite)
    try:
        _write_file(json_path, text.encode(), overwrite)
    except BaseException:
        if not overwrite:  # the tensors were ours: leave nothing behind
            tensor_path.unlink(missing_ok=True)
        raise
    return tensor_path


def _check_writable(tensor_path: Path, json_path: Path, overwrite: bool) -> None:
    """Refuse symlinks (the files or their folder) and, without ``overwrite``, existing files."""
    folder = tensor_path.parent
    if folder.is_symlink():
        raise ArtifactError(f"{folder} is a symlink: steerlab does not write artifacts through symlinks; "
                            "save into a real folder.")
    for file in (tensor_path, json_path):
        if file.is_symlink():
            raise ArtifactError(f"{file} is a symlink: steerlab does not write through symlinks; remove it or "
                                "choose another name.")
    for file in (tensor_path, json_path):
        if file.exists() and not overwrite:
            raise FileExistsError(f"{file} already exists: choose another name or pass overwrite=True.")


def _write_file(target: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to a new temporary file beside ``target``, then move it into place atomically."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temporary, target, overwrite)
    finally:
        temporary.unlink(missing_ok=True)


def _publish(temporary: Path, target: Path, overwrite: bool) -> None:
    """Move ``temporary`` to ``target``: ``os.replace``, or without ``overwrite`` a hard link that fails if
    ``target`` exists (never replacing a file that appeared meanwhile)."""
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(f"{target} already exists: choose another name or pass overwrite=True.") from None
    except (OSError, NotImplementedError):  # no hard links on this filesystem
        if os.path.lexists(target):
            raise FileExistsError(f"{target} already exists: choose another name or pass overwrite=True.") from None
        os.replace(temporary, target)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in artifact metadata.")


# ------------------------------------------------------------------ reading


def artifact_kind(path: str | os.PathLike) -> str:
    """The ``kind`` recorded in ``NAME.json`` ("probe", "token_probe", "steering_vector"), validated, without
    reading the tensors."""
    _, json_path = artifact_paths(path)
    return _check_kind(json_path, _read_json(json_path), None)


def load_artifact(path: str | os.PathLike, *, kind: str | None = None, classes: Collection[str] | None = None,
                  extra_tensors: Callable[[dict[str, Any]], Mapping[str, TensorSpec]] | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and validate an artifact: ``(tensors, metadata)``.

    Args:
        kind: the kind expected (another kind is refused); None accepts any known kind.
        classes: for kinds with a ``class`` field, the class names this steerlab knows.
        extra_tensors: given the validated metadata, specs of tensors beyond the kind's schema
            (a class's own arrays); they replace the schema's spec of the same name.
    """
    metadata = read_metadata(path, kind=kind, classes=classes)
    extra = extra_tensors(metadata) if extra_tensors is not None else {}
    return read_tensors(path, metadata, extra), metadata


def read_metadata(path: str | os.PathLike, *, kind: str | None = None,
                  classes: Collection[str] | None = None) -> dict[str, Any]:
    """Read ``NAME.json`` and check it against its kind's schema (version, kind, fields, class); also
    that ``NAME.safetensors`` exists, so a missing half is reported before anything is parsed further."""
    tensor_path, json_path = artifact_paths(path)
    metadata = _read_json(json_path)
    _check_version(json_path, metadata)
    schema = SCHEMAS[_check_kind(json_path, metadata, kind)]
    _check_fields(json_path, metadata, schema)
    if classes is not None and metadata["class"] not in classes:
        raise artifact_error(json_path, f"unknown {schema.noun} class {metadata['class']!r} (this steerlab knows "
                                        f"{', '.join(sorted(classes))}): written by another steerlab, or edited.")
    if not tensor_path.is_file():
        raise _missing(tensor_path)
    return metadata


def read_tensors(path: str | os.PathLike, metadata: dict[str, Any],
                 extra: Mapping[str, TensorSpec] | None = None) -> dict[str, torch.Tensor]:
    """Read ``NAME.safetensors`` and check names, shapes, dtypes and finiteness against the schema of
    ``metadata["kind"]`` plus ``extra``, then that it is the file its JSON was written with."""
    tensor_path, json_path = artifact_paths(path)
    schema = SCHEMAS[metadata["kind"]]
    specs = {name: spec for name, spec in {**schema.tensors, **(extra or {})}.items()
             if spec.when is None or spec.when(metadata)}
    data = _read_bytes(tensor_path)
    tensors = _parse_safetensors(tensor_path, data)
    _check_tensor_names(tensor_path, tensors, specs, schema)
    for name, tensor in tensors.items():
        _check_tensor(tensor_path, name, tensor, specs[name], metadata, schema)
    expected = metadata.get("tensors_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise artifact_error(tensor_path, f"is not the file {json_path.name} was saved with (sha256 differs): the "
                                          "two files come from different saves (an interrupted overwrite?) or one "
                                          f"was edited; re-save the {schema.noun}.")
    return tensors


@contextlib.contextmanager
def invalid_artifact(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a ValueError / TypeError / RuntimeError raised while building an object from validated metadata into an
    :class:`ArtifactError` naming the JSON file (``what``: e.g. "a valid SteeringVector")."""
    _, json_path = artifact_paths(path)
    try:
        yield
    except ArtifactError:
        raise
    except (ValueError, TypeError, RuntimeError) as error:
        raise artifact_error(json_path, f"the metadata does not make {what}: {error}") from error


def _missing(file: Path) -> ArtifactNotFoundError:
    """The error for a missing file, pointing at the name steerlab before format 1 would have written."""
    base = file.with_suffix("")  # NAME
    legacy = base.with_suffix(file.suffix) if base.suffix else None  # "raptor_C0.5" was written as raptor_C0.*
    hint = ""
    if legacy is not None and legacy.is_file():
        hint = (f" ({legacy.name} exists: steerlab 0.1 cut names at their last dot; load "
                f"{legacy.with_suffix('')} instead)")
    return artifact_error(file, "file is missing: an artifact is a .safetensors file plus a .json file with the "
                                f"same name{hint}.", ArtifactNotFoundError)


def _read_json(json_path: Path) -> dict[str, Any]:
    """Parse ``json_path``: a UTF-8 JSON object, or an ArtifactError naming the file and the line."""
    if not json_path.is_file():
        raise _missing(json_path)
    try:
        text = json_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise artifact_error(json_path, f"not UTF-8 text (byte {error.start}): the file is corrupt.") from None
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise artifact_error(json_path, f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}; "
                                        "the file is truncated or was edited.") from None
    if not isinstance(metadata, dict):
        raise artifact_error(json_path, f"the metadata must be a JSON object, got {type(metadata).__name__}: "
                                        "not a steerlab artifact.")
    return metadata


def _check_version(json_path: Path, metadata: dict[str, Any]) -> None:
    from steerlab._version import __version__

    if "steerlab_version" not in metadata:
        raise artifact_error(json_path, "field 'steerlab_version' is missing: not a steerlab artifact, or edited.")
    version = metadata.get("format_version", 1)
    if not POSITIVE_INT.accepts(version):
        raise artifact_error(json_path, f"field 'format_version' must be a positive int, got {version!r}.")
    if version > FORMAT_VERSION:
        raise artifact_error(json_path, f"written in artifact format {version} by steerlab "
                                        f"{metadata['steerlab_version']}; this steerlab ({__version__}) reads "
                                        f"format {FORMAT_VERSION} and older: upgrade steerlab.")


def _check_kind(json_path: Path, metadata: dict[str, Any], expected: str | None) -> str:
    kind = metadata.get("kind")
    if kind not in SCHEMAS:
        raise artifact_error(json_path, f"unknown kind {kind!r} (known: {', '.join(SCHEMAS)}): not a steerlab "
                                        "artifact, or written by a newer steerlab.")
    if expected is not None and kind != expected:
        raise artifact_error(json_path, f"holds a {kind!r}, not a {expected!r}.")
    return kind


def _schema(kind: str) -> Schema:
    """The schema of ``kind``, for writers (a programming error, not a bad file, when unknown)."""
    if kind not in SCHEMAS:
        raise ArtifactError(f"Unknown artifact kind {kind!r}; known: {', '.join(SCHEMAS)}.")
    return SCHEMAS[kind]


def _check_fields(json_path: Path, metadata: dict[str, Any], schema: Schema) -> None:
    for name, spec in {**COMMON_FIELDS, **schema.fields}.items():
        if name not in metadata:
            if spec.required:
                raise artifact_error(json_path, f"field {name!r} is missing (a {schema.noun} records it): the file "
                                                "was edited or written by another program.")
            continue
        value = metadata[name]
        if not spec.type.accepts(value):
            raise artifact_error(json_path, f"field {name!r} must be {spec.type.name}, got {_show(value)}.")
    for check in schema.checks:
        problem = check(metadata)
        if problem:
            raise artifact_error(json_path, problem + ".")


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise artifact_error(file, f"cannot be read: {error}") from None


def _parse_safetensors(tensor_path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes (never pickle), or an ArtifactError for a damaged file."""
    try:
        return deserialize_tensors(data)
    except SafetensorError as error:
        raise artifact_error(tensor_path, f"not a readable safetensors file ({error}): it is truncated or "
                                          "corrupt; re-save the artifact.") from None


def _check_tensor_names(tensor_path: Path, tensors: Mapping[str, torch.Tensor], specs: Mapping[str, TensorSpec],
                        schema: Schema) -> None:
    missing = [name for name, spec in specs.items() if spec.required and name not in tensors]
    if missing:
        raise artifact_error(tensor_path, f"tensor {missing[0]!r} is missing (the file holds "
                                          f"{sorted(tensors) or 'no tensors'}): the file is corrupt or was edited.")
    unexpected = sorted(set(tensors) - set(specs))
    if unexpected:
        raise artifact_error(tensor_path, f"unexpected tensor {unexpected[0]!r} (a {schema.noun} holds "
                                          f"{', '.join(specs)}): the file was edited or written by another program.")


def _check_tensor(tensor_path: Path, name: str, tensor: torch.Tensor, spec: TensorSpec, metadata: dict[str, Any],
                  schema: Schema) -> None:
    """Dtype, shape (from the metadata) and finite values of one tensor."""
    if tensor.dtype not in spec.dtypes:
        allowed = " or ".join(str(d).removeprefix("torch.") for d in spec.dtypes)
        raise artifact_error(tensor_path, f"tensor {name!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, "
                                          f"expected {allowed}: the file was edited or written by another program.")
    expected, fields = _expected_shape(spec.shape, metadata)
    if not _shape_matches(tuple(tensor.shape), expected):
        source = f" from the metadata ({', '.join(f'{k}={metadata.get(k)}' for k in fields)})" if fields else ""
        raise artifact_error(tensor_path, f"tensor {name!r} has shape {list(tensor.shape)}, expected "
                                          f"{_show_shape(expected)}{source}: the .safetensors and .json files do "
                                          "not belong together, or one was edited.")
    if tensor.is_floating_point():
        n_nan, n_inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if n_nan or n_inf:
            counts = ", ".join(part for part in (f"{n_nan} NaN" * bool(n_nan), f"{n_inf} inf" * bool(n_inf)) if part)
            raise artifact_error(tensor_path, f"tensor {name!r} has non-finite values ({counts}): the file is "
                                              f"corrupt or was edited; re-save the {schema.noun}.")


def _expected_shape(pattern: tuple[Any, ...], metadata: dict[str, Any]) -> tuple[tuple[Any, ...], list[str]]:
    """The concrete shape (ints, ``...`` last) a pattern means for ``metadata``, and the fields it used."""
    shape: list[Any] = []
    fields: list[str] = []
    for axis in pattern:
        if axis == LAYER_AXIS:
            fields.append("n_layers")
            if metadata.get("n_layers") is not None:
                shape.append(metadata["n_layers"])
        elif isinstance(axis, str):
            fields.append(axis)
            shape.append(metadata[axis])
        else:
            shape.append(axis)
    return tuple(shape), fields


def _shape_matches(actual: tuple[int, ...], expected: tuple[Any, ...]) -> bool:
    if expected and expected[-1] is ...:
        prefix = expected[:-1]
        return actual[:len(prefix)] == prefix
    return actual == expected


def _show_shape(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join("..." if axis is ... else str(axis) for axis in shape) + "]"


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"

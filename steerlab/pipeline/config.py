"""The ``steerlab run`` configuration: a TOML or YAML file, validated with messages that say what to fix.

Every section but ``[data]`` is optional; unknown sections and keys are errors (with a
"did you mean" suggestion), so a typo never silently falls back to a default.

The example below is ``EXAMPLE_CONFIG`` (``steerlab run --example`` prints it):

    >>> from steerlab.pipeline.config import parse_config
    >>> config = parse_config({"data": {"dataset": "demo/cities"}})
    >>> config.capture.site, config.steering.direction
    ('resid_post', 'diff_means')
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


EXAMPLE_CONFIG = """\
[model]
name = "demo"                 # "demo", a save_pretrained directory or a hub id
backend = "auto"              # auto | hf | transformer_lens | nnsight
# device = "cuda"             # where to run it (default: cpu, or where a device_map put it)
# dtype = "bfloat16"          # float32 | bfloat16 | float16 (default: as saved)

[data]
dataset = "demo/cities"       # a built-in dataset, or:
# file = "statements.csv"     # your CSV / JSONL (columns: text_column, label_column[, group_column])
# concept = "truth"           # files only: what the labels mean (default: the file's name)
# test_share = 0.3            # files only: the held-out share, split by group

[capture]
site = "resid_post"
layers = "all"                # or a list such as [0, 2, -1]
position = "last"             # last | mean | a token index

[probes]
methods = ["raptor", "diff_means", "lda", "logistic"]

[steering]
direction = "diff_means"      # the probe whose direction steers; "none" skips steering
alphas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0]  # x the layer's median token norm (all in one batched sweep)
# layers = [4, 8, 12]         # candidate layers for the calibration sweep (default "all": every captured one)
neutral = "demo/topic"        # texts for KL / perplexity: a built-in dataset or a text file
kl_budget = 0.1               # every (layer, alpha) choice keeps KL on the neutral texts within this (nats/token)
# verdict_suffix = " this is"   # for datasets without verdict prompts: text + suffix, then
# verdict_words = ["true", "false"]  # the verdict is log P(first) - log P(second)

# [hallucination]             # optional: token-level probes on the model's own answers
# dataset = "demo/qa"         # or file = "qa.csv" (question_column, answer_column[, group_column])
# test_share = 0.5

# [sae]                       # optional: SAE features against the probe directions (needs verdicts)
# path = "demo"               # a sae-lens folder (cfg.json + sae_weights.safetensors), or train one:
# layer = 2                   # trains a TopK SAE on the [data] training texts (or texts = "corpus.txt")

[output]
dir = "steerlab-run"          # never overwritten unless you pass --overwrite
"""


class ConfigError(ValueError):
    """A config file that cannot run; the message names the key and the fix."""


@dataclass
class ModelConfig:
    name: str = "demo"
    backend: str = "auto"
    device: str | None = None
    dtype: str | None = None  # the weights dtype: float32, bfloat16 or float16 (default: as saved)


@dataclass
class DataConfig:
    dataset: str | None = None
    file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = None
    concept: str | None = None
    test_share: float = 0.3


@dataclass
class CaptureConfig:
    site: str = "resid_post"
    layers: Any = "all"
    position: Any = "last"
    batch_size: int = 32


@dataclass
class ProbesConfig:
    methods: list[str] = field(default_factory=lambda: ["raptor", "diff_means", "lda", "logistic"])
    stability_runs: int = 3


@dataclass
class SteeringConfig:
    direction: str = "diff_means"
    alphas: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0])
    layers: Any = "all"  # candidate layers of the calibration sweep ("all" or a list of captured layers)
    neutral: str | None = "demo/topic"
    neutral_count: int = 64
    target: float = 0.9
    kl_budget: float = 0.1  # nats per token on neutral text (steerlab.steering.evaluation.KL_BUDGET)
    control_max: float = 0.2
    verdict_suffix: str | None = None
    verdict_words: list[str] | None = None


@dataclass
class HallucinationConfig:
    dataset: str | None = None
    file: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    group_column: str | None = None
    test_share: float = 0.5
    max_new_tokens: int = 8


@dataclass
class SAEStageConfig:
    path: str | None = None
    layer: int | None = None
    texts: str | None = None
    d_sae: int = 512
    k: int = 8
    steps: int = 2000
    kl_budget: float = 0.1


@dataclass
class OutputConfig:
    dir: str = "steerlab-run"


@dataclass
class RunConfig:
    """The whole run; ``source`` is the file it came from (for messages and relative paths)."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    hallucination: HallucinationConfig | None = None  # stages that run only when their section is present
    sae: SAEStageConfig | None = None
    source: str = "<config>"


BACKENDS = ("auto", "hf", "transformer_lens", "nnsight")
DTYPES = ("float32", "bfloat16", "float16")
SECTIONS = {"model": ModelConfig, "data": DataConfig, "capture": CaptureConfig, "probes": ProbesConfig,
            "steering": SteeringConfig, "output": OutputConfig, "hallucination": HallucinationConfig,
            "sae": SAEStageConfig}
OPTIONAL_SECTIONS = ("hallucination", "sae")  # absent = the stage does not run


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file. `steerlab run --help` shows an example.")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from error
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
    else:
        raise ConfigError(f"{path}: use a .toml, .yaml or .yml file (got {path.suffix or 'no suffix'!r}).")
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "<config>") -> RunConfig:
    """Validate a mapping (as read from TOML / YAML) into a :class:`RunConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected sections like [model] and [data], got {type(raw).__name__}.")
    for name in raw:
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]{_suggest(name, SECTIONS)}. "
                              f"Sections: {', '.join(f'[{s}]' for s in SECTIONS)}.")
    if "data" not in raw:
        raise ConfigError(f"{source}: missing [data]: add `[data]` with `dataset = \"demo/cities\"` "
                          "or `file = \"my.csv\"`.")
    sections = {name: _section(name, cls, raw.get(name, {}), source) for name, cls in SECTIONS.items()
                if name in raw or name not in OPTIONAL_SECTIONS}
    config = RunConfig(**sections, source=source)
    _resolve_paths(config)
    _check_values(config)
    return config


def _resolve_paths(config: RunConfig) -> None:
    """Make every file path of the config absolute, relative to the config file's folder, once: stages
    take the resolved config and never look paths up again."""
    from steerlab.datasets import available

    def resolved(path: str | None) -> str | None:
        if path is None or Path(path).is_absolute() or config.source == "<config>":
            return path
        return str(Path(config.source).parent / path)

    config.data.file = resolved(config.data.file)
    if config.steering.neutral is not None and config.steering.neutral not in available():
        config.steering.neutral = resolved(config.steering.neutral)
    if config.hallucination is not None:
        config.hallucination.file = resolved(config.hallucination.file)
    if config.sae is not None:
        config.sae.texts = resolved(config.sae.texts)
        if config.sae.path != "demo":
            config.sae.path = resolved(config.sae.path)
    config.output.dir = resolved(config.output.dir)


def _section(name: str, cls: type, values: Any, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{name}] must be a table of keys, got {values!r}.")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: [{name}] has no key {key!r}{_suggest(key, known)}. "
                              f"Keys: {', '.join(sorted(known))}.")
        _check_type(f"[{name}] {key}", value, hints[key], source)
    return cls(**values)


def _check_type(where: str, value: Any, hint: Any, source: str) -> None:
    text = str(hint)
    if value is None:
        if "None" not in text and hint is not Any:
            raise ConfigError(f"{source}: {where} cannot be empty.")
        return
    expected = {"int": (int,), "float": (int, float), "str": (str,)}
    if hint is Any:
        return
    if text.startswith("list"):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where} must be a list, like [1, 2], got {value!r}.")
        return
    for name, types in expected.items():
        if text.startswith(name) or text == f"<class '{name}'>":
            if isinstance(value, bool) or not isinstance(value, types):
                raise ConfigError(f"{source}: {where} must be a {name}, got {value!r}.")
            return


def _check_values(config: RunConfig) -> None:
    from steerlab.datasets import available
    from steerlab.probes.sweep import METHODS
    from steerlab.sites import SITES

    source, data = config.source, config.data
    if config.model.backend not in BACKENDS:
        raise ConfigError(f"{source}: [model] backend {config.model.backend!r} is unknown"
                          f"{_suggest(config.model.backend, BACKENDS)}. Backends: {', '.join(BACKENDS)}.")
    if config.model.dtype not in (None, *DTYPES):
        raise ConfigError(f"{source}: [model] dtype {config.model.dtype!r} is unknown{_suggest(config.model.dtype, DTYPES)}."
                          f" Dtypes: {', '.join(DTYPES)} (or leave it out: the dtype the weights were saved in).")
    if (data.dataset is None) == (data.file is None):
        raise ConfigError(f"{source}: [data] needs exactly one of `dataset` (built-in: "
                          f"{', '.join(available())}) or `file` (a CSV / JSONL path).")
    if data.dataset is not None and data.dataset not in available():
        raise ConfigError(f"{source}: [data] dataset {data.dataset!r} is not built in{_suggest(data.dataset, available())}."
                          " For your own data use `file = \"path.csv\"`.")
    if data.file is not None:
        path = Path(data.file)
        if not path.is_file():
            raise ConfigError(f"{source}: [data] file {data.file!r}: no such file (paths are relative to the config).")
        if path.suffix not in (".csv", ".jsonl"):
            raise ConfigError(f"{source}: [data] file must be .csv or .jsonl, got {path.name!r}.")
    if not 0 < data.test_share < 1:
        raise ConfigError(f"{source}: [data] test_share must be between 0 and 1, got {data.test_share}.")
    capture = config.capture
    if capture.site not in SITES:
        raise ConfigError(f"{source}: [capture] site {capture.site!r} is unknown{_suggest(capture.site, SITES)}. "
                          f"Sites: {', '.join(SITES)}.")
    _check_layer_list(capture.layers, "[capture] layers", source)
    if not (capture.position in ("last", "mean") or (isinstance(capture.position, int)
                                                      and not isinstance(capture.position, bool))):
        raise ConfigError(f"{source}: [capture] position must be \"last\", \"mean\" or a token index, "
                          f"got {capture.position!r}.")
    if capture.batch_size < 1:
        raise ConfigError(f"{source}: [capture] batch_size must be >= 1, got {capture.batch_size}.")
    methods = config.probes.methods
    if not methods:
        raise ConfigError(f"{source}: [probes] methods is empty; name at least one of {', '.join(METHODS)}.")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"{source}: [probes] method {method!r} is unknown{_suggest(method, METHODS)}. "
                              f"Methods: {', '.join(METHODS)}.")
    steering = config.steering
    if steering.direction != "none" and steering.direction not in methods:
        raise ConfigError(f"{source}: [steering] direction {steering.direction!r} must be one of the probe methods "
                          f"({', '.join(methods)}) or \"none\".")
    _check_layer_list(steering.layers, "[steering] layers", source)
    if not steering.alphas or any(not isinstance(a, (int, float)) or a <= 0 for a in steering.alphas):
        raise ConfigError(f"{source}: [steering] alphas must be positive numbers (x the median token norm), "
                          f"got {steering.alphas!r}.")
    for key, value, low, high in (("target", steering.target, 0.0, 1.0), ("control_max", steering.control_max, 0.0, 1.0)):
        if not low < value <= high:
            raise ConfigError(f"{source}: [steering] {key} is a share of statements: between 0 and 1, got {value}.")
    if steering.kl_budget <= 0 or steering.neutral_count < 1:
        raise ConfigError(f"{source}: [steering] kl_budget must be > 0 and neutral_count >= 1, got "
                          f"{steering.kl_budget} and {steering.neutral_count}.")
    if (steering.verdict_suffix is None) != (steering.verdict_words is None):
        raise ConfigError(f"{source}: [steering] set verdict_suffix and verdict_words together, e.g. "
                          "verdict_suffix = \" this is\" and verdict_words = [\"true\", \"false\"].")
    if steering.verdict_words is not None and (len(steering.verdict_words) != 2
                                               or not all(isinstance(w, str) for w in steering.verdict_words)):
        raise ConfigError(f"{source}: [steering] verdict_words must be two words [positive, negative], "
                          f"got {steering.verdict_words!r}.")
    _check_optional_stages(config, available())
    if steering.neutral is not None and steering.neutral not in available():
        if not Path(steering.neutral).is_file():
            raise ConfigError(f"{source}: [steering] neutral {steering.neutral!r} is neither a built-in dataset nor a "
                              "text file (one text per line).")


def _check_optional_stages(config: RunConfig, datasets: list[str]) -> None:
    source, hallucination, sae = config.source, config.hallucination, config.sae
    if hallucination is not None:
        if (hallucination.dataset is None) == (hallucination.file is None):
            raise ConfigError(f"{source}: [hallucination] needs exactly one of `dataset` (e.g. \"demo/qa\") or `file` "
                              "(a CSV of questions and reference answers).")
        if hallucination.dataset is not None and hallucination.dataset != "demo/qa":
            raise ConfigError(f"{source}: [hallucination] dataset {hallucination.dataset!r}: the built-in QA set is "
                              "\"demo/qa\"; for your own questions use `file = \"qa.csv\"`.")
        if hallucination.file is not None and not Path(hallucination.file).is_file():
            raise ConfigError(f"{source}: [hallucination] file {hallucination.file!r}: no such file.")
        if not 0 < hallucination.test_share < 1:
            raise ConfigError(f"{source}: [hallucination] test_share must be between 0 and 1.")
        if hallucination.max_new_tokens < 1:
            raise ConfigError(f"{source}: [hallucination] max_new_tokens must be >= 1, got {hallucination.max_new_tokens}.")
    if sae is not None:
        if (sae.path is None) == (sae.layer is None):
            raise ConfigError(f"{source}: [sae] needs exactly one of `path` (a saved sae-lens SAE, or \"demo\") or "
                              "`layer` (train one on the model at that layer).")
        if sae.path is not None and sae.path != "demo" and not (Path(sae.path) / "cfg.json").is_file():
            raise ConfigError(f"{source}: [sae] path {sae.path!r} holds no cfg.json: point it at a folder written by "
                              "sae.save_model / steerlab train-sae.")
        if sae.d_sae < 1 or not 1 <= sae.k <= sae.d_sae or sae.steps < 1 or sae.kl_budget <= 0:
            raise ConfigError(f"{source}: [sae] needs d_sae >= 1, 1 <= k <= d_sae, steps >= 1 and kl_budget > 0; got "
                              f"d_sae={sae.d_sae}, k={sae.k}, steps={sae.steps}, kl_budget={sae.kl_budget}.")
        if sae.texts is not None and not Path(sae.texts).is_file():
            raise ConfigError(f"{source}: [sae] texts {sae.texts!r}: no such file (one text per line).")
        if config.steering.direction == "none":
            raise ConfigError(f"{source}: [sae] compares SAE features with the steering direction: set [steering] "
                              "direction to a probe method, or remove [sae].")


def _check_layer_list(layers: Any, key: str, source: str) -> None:
    """``"all"`` or a non-empty list of ints (negative count from the end); checked against the model later."""
    if not (layers == "all" or (isinstance(layers, list)
                                and all(isinstance(x, int) and not isinstance(x, bool) for x in layers))):
        raise ConfigError(f"{source}: {key} must be \"all\" or a list of ints like [0, 2, -1], got {layers!r}.")
    if isinstance(layers, list) and not layers:
        raise ConfigError(f"{source}: {key} is empty: use \"all\" or list layers like [0, 2, -1].")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

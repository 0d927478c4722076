"""Loading sae-lens SAEs and checking that they fit a model and a site.

A sparse autoencoder is trained on one hook point of one model; used anywhere else
its features mean nothing. :func:`load_sae` loads one (a local ``save_model``
directory, the shipped demo SAE, the SAE shipped for a named real model, or a hub release
for users with network access) and, given a model, refuses it when its input width or hook
point do not match. The SAEs shipped for real models (:data:`SHIPPED_MODEL_SAES`, loaded by
the model's registry name, e.g. ``load_sae("smollm2-135m-instruct", model=model)``) are
refused outright on a model of another name.

Example:
    >>> import steerlab
    >>> from steerlab.sae import load_sae
    >>> model = steerlab.load_model("demo")                                  # doctest: +SKIP
    >>> sae = load_sae("demo", model=model)                                  # doctest: +SKIP
    >>> sae.cfg.metadata.hook_name, sae.cfg.d_in, sae.cfg.d_sae              # doctest: +SKIP
    ('blocks.2.hook_resid_post', 128, 512)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerlab.sites import SitePoint

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike

DEMO_SAE_ENV_VAR = "STEERLAB_DEMO_SAE"
DEMO_SAE_DEFAULT = "topk-blocks.2.hook_resid_post"
# registry name of a real model -> its shipped SAE under assets/ (card.json beside the weights says how it was made)
SHIPPED_MODEL_SAES = {"smollm2-135m-instruct": "smollm2-sae/topk-blocks.15.hook_resid_post"}


def demo_sae_root() -> Path:
    """Where the SAEs trained on the demo model are shipped: ``assets/demo-sae`` (inside the
    package in a wheel install: see :mod:`steerlab.shipped`)."""
    from steerlab.shipped import shipped_path

    return shipped_path("demo-sae")


def demo_sae_path(name: str = DEMO_SAE_DEFAULT) -> Path:
    """A shipped demo SAE's directory: ``$STEERLAB_DEMO_SAE`` (for the default) or ``assets/demo-sae/<name>``."""
    override = os.environ.get(DEMO_SAE_ENV_VAR)
    if override and name == DEMO_SAE_DEFAULT:
        return Path(override)
    return demo_sae_root() / name


def shipped_demo_saes() -> list[str]:
    """Names of the SAEs under ``assets/demo-sae`` (directories holding a ``cfg.json``)."""
    root = demo_sae_root()
    return sorted(p.name for p in root.iterdir() if (p / "cfg.json").is_file()) if root.is_dir() else []


def shipped_model_sae_path(model_name: str) -> Path:
    """The directory of the SAE shipped for the real model ``model_name`` (see :data:`SHIPPED_MODEL_SAES`)."""
    from steerlab.shipped import shipped_path

    return shipped_path(SHIPPED_MODEL_SAES[model_name])


def sae_point(sae: SAE) -> SitePoint:
    """The :class:`SitePoint` of an SAE's ``cfg.metadata.hook_name`` (a TransformerLens hook name)."""
    hook_name = sae.cfg.metadata.hook_name
    if not hook_name:
        raise ValueError("This SAE records no hook point (cfg.metadata.hook_name is empty): set it to the "
                         "TransformerLens name it was trained on, e.g. sae.cfg.metadata.hook_name = "
                         "'blocks.1.hook_resid_post'.")
    return SitePoint.parse(hook_name)


def check_sae(sae: SAE, model: ModelLike = None, *, site: str | None = None, layer: int | None = None) -> SitePoint:
    """Raise a ValueError if ``sae`` does not fit ``model`` (width, layer count) or the expected site/layer.

    Warns (UserWarning) when the SAE records a ``cfg.metadata.model_name`` other than ``model.name``:
    same width and layers do not make it the same model (a renamed local copy is fine).

    Returns the SAE's :class:`SitePoint`.
    """
    point = sae_point(sae)
    if site is not None and site != point.site:
        raise ValueError(f"This SAE was trained on {point.hook_name} (site {point.site!r}), not on site {site!r}: "
                         f"pass site={point.site!r}, or load an SAE trained on {site}.")
    if layer is not None and model is not None and layer < 0:
        layer = layer % model.n_layers
    if layer is not None and layer != point.layer:
        raise ValueError(f"This SAE was trained on layer {point.layer} ({point.hook_name}), not layer {layer}: "
                         f"pass layer={point.layer}, or load an SAE trained on layer {layer}.")
    if model is not None:
        if sae.cfg.d_in != model.d_model:
            raise ValueError(f"This SAE reads {sae.cfg.d_in}-dimensional activations but {model.name!r} has "
                             f"d_model={model.d_model}: it was trained on another model. Load the SAE made for "
                             "this model, or train one (steerlab train-sae).")
        if point.layer >= model.n_layers:
            raise ValueError(f"This SAE hooks {point.hook_name} but {model.name!r} has only {model.n_layers} layers: "
                             "it was trained on another model.")
        model.point(point.site, point.layer)  # raises if the site is unavailable on this architecture
        _warn_on_other_model_name(sae, model)
    return point


def _warn_on_other_model_name(sae: SAE, model: ModelLike) -> None:
    """UserWarning when the SAE's recorded ``model_name`` (if any) differs from ``model.name``."""
    trained_on = getattr(sae.cfg.metadata, "model_name", None)
    if trained_on and getattr(model, "name", None) and trained_on != model.name:
        warnings.warn(f"This SAE records model_name={trained_on!r} but is used on {model.name!r}: its features "
                      f"only mean something on {trained_on!r}. Check that this is the right model (or a renamed "
                      "copy of it), or load the SAE trained on this model.", UserWarning, stacklevel=3)


def load_sae(source: str | os.PathLike | tuple[str, str], *, model: ModelLike = None, site: str | None = None,
             layer: int | None = None, device: str | None = None) -> Any:
    """Load a sae-lens SAE and check it against ``model`` / ``site`` / ``layer`` when given.

    Args:
        source: ``"demo"`` (the shipped TopK SAE of the demo model, or ``$STEERLAB_DEMO_SAE``),
            ``"demo/<name>"`` (another shipped one, see :func:`shipped_demo_saes`), a real
            model's registry name (its shipped SAE, :data:`SHIPPED_MODEL_SAES`; refused on a model
            of another name), a
            directory written by ``sae.save_model`` (``cfg.json`` + ``sae_weights.safetensors``),
            or ``(release, sae_id)`` for ``SAE.from_pretrained`` (needs the hub, e.g.
            ``("gpt2-small-res-jb", "blocks.8.hook_resid_pre")``).
        model: a :class:`~steerlab.models.ModelAdapter` the SAE must fit (d_in == d_model).
        site, layer: the site / layer the caller means to use it at; must equal the SAE's hook.
        device: where to put the SAE; default: ``model``'s device when a model is given, else CPU.

    Returns:
        A sae-lens ``SAE`` (``StandardSAE``, ``TopKSAE``...) in eval mode.
    """
    from sae_lens import SAE

    device = _default_device(model) if device is None else str(device)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise ValueError(f"A hub SAE is (release, sae_id), got {source!r}.")
        sae = SAE.from_pretrained(*source, device=device)
    else:
        text = os.fspath(source)
        if text == "demo" or text.startswith("demo/"):
            path = demo_sae_path(text.removeprefix("demo").removeprefix("/") or DEMO_SAE_DEFAULT)
            hint = (f"Train it with `steerlab train-sae demo --layer 2 --out {path}` (see assets/demo-sae/README.md), "
                    f"or point ${DEMO_SAE_ENV_VAR} at a trained copy. Shipped: {shipped_demo_saes()}.")
        elif text in SHIPPED_MODEL_SAES:
            path = shipped_model_sae_path(text)
            hint = f"It is shipped in assets/{SHIPPED_MODEL_SAES[text]}; benchmarks/train_real_sae.py rebuilds it."
            model_name = getattr(model, "name", None)
            if model is not None and model_name != text:
                raise ValueError(f"The shipped SAE {text!r} belongs to {text!r}, not to {model_name!r}: its features "
                                 f"mean nothing on another model. Load {text!r} with steerlab.load_model({text!r}), or "
                                 f"an SAE trained on {model_name!r} (steerlab train-sae).")
        else:
            path, hint = Path(text).expanduser(), "Pass a directory written by sae.save_model(path)."
        if not (path / "cfg.json").is_file():
            raise FileNotFoundError(f"No SAE at {path} (no cfg.json). {hint}")
        sae = SAE.load_from_disk(path, device=device)
    sae.eval()
    check_sae(sae, model, site=site, layer=layer)
    return sae


def _default_device(model: ModelLike) -> str:
    """The model's device as a string (``"cuda:0"``, ``"cpu"``...), or ``"cpu"`` without a model."""
    device = getattr(model, "device", None) if model is not None else None
    return "cpu" if device is None else str(device)

"""Weight interpolation: a detector between the fine-tuned weights and the COCO model they came from.

Fine-tuning on street photos taught the model garbage and made it forget much of what the COCO model
knew about the kinds those photos rarely show (models/MODEL_CARD.md, "Accuracy with human labels").
Both networks start from the same weights, so the straight line between them in weight space stays a
working detector (Wortsman et al., "Robust fine-tuning of zero-shot models", WiSE-FT, 2022): part of the
way towards the COCO model gives back much of what was forgotten for little of what was learned. No
training, same network, same speed.

For weights w_current (fine-tuned) and w_base (the COCO model), alpha in [0, 1]:

- every weight of the shared network: (1 - alpha) * w_current + alpha * w_base;
- each BatchNorm's eval-mode function, not its parameters: a BatchNorm in eval mode is the per-channel
  affine y = s * x + t (s = weight / sqrt(running_var + eps), t = bias - running_mean * s), and the
  two sides write the same function with different parameters (the COCO checkpoints keep folded
  BatchNorms as identities, the fine-tuned ones real statistics: detect.model.training.identity_batchnorms),
  so the parameters' mean is not the functions' mean. (s, t) are interpolated instead;
- the class score rows: a class both models know (matched by name) from its two rows, with
  `class_alpha` (default: the head's alpha); a class only the fine-tuned model has (garbage) keeps its row.

`layer_alphas` gives layers of the network (by index in the model's list: 0-10 the backbone, 11-22 the
neck, 23 the head for YOLO26n) their own alpha over `alpha`, to move one part of the network and not the
others ("where was it forgotten?").

`layer_keeps` trims the fine-tuning's change in chosen layers before the interpolation (task-vector
sparsification, as in TIES-merging, Yadav et al. 2023): of each weight tensor's change from the base, only
the largest-magnitude fraction `keep` is kept and the rest put back to the base's value. BatchNorm
functions and the class score rows are not trimmed.

Alpha 0 gives the fine-tuned weights' outputs, alpha 1 with class_alpha 1 the COCO model's for the kinds
both know. The result is a candidate like any trained one: `gridpatrol model promote` decides.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect import SetupError
from detect.model.promotion import is_site_model, sha256_of

log = logging.getLogger(__name__)


class SoupError(SetupError):
    """Weights that cannot be interpolated; the message names them and why."""


@dataclass(frozen=True, slots=True)
class Soup:
    """What `interpolate` wrote: the weights and what they are made of."""

    out: Path
    alpha: float
    class_alpha: float
    row_alphas: dict[str, float]  # classes whose row has its own alpha (over class_alpha)
    layer_alphas: dict[int, float]  # layers (index in the network) with their own alpha (over alpha)
    layer_keeps: dict[int, float]  # layers whose change from the base is trimmed to this fraction
    shared_classes: tuple[str, ...]  # class rows taken partly from the base (the rest kept)


def interpolate(
    current: str | os.PathLike[str],
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    alpha: float,
    class_alpha: float | None = None,
    row_alphas: Mapping[str, float] | None = None,
    layer_alphas: Mapping[int, float] | None = None,
    layer_keeps: Mapping[int, float] | None = None,
) -> Soup:
    """Write weights alpha of the way from current towards base (module docstring); returns what was done.
    row_alphas: class name -> its own score row's alpha, over class_alpha (a class both models know).
    layer_alphas: layer index -> that layer's own alpha, over alpha.
    layer_keeps: layer index -> the fraction of each of its weight tensors' change that is kept."""
    import torch

    from detect.backends import import_ultralytics

    row_alphas = dict(row_alphas or {})
    layer_alphas = dict(layer_alphas or {})
    layer_keeps = dict(layer_keeps or {})
    named = [("alpha", alpha)] + ([("class alpha", class_alpha)] if class_alpha is not None else [])
    named += [(f"alpha of {name}", value) for name, value in row_alphas.items()]
    named += [(f"alpha of layer {index}", value) for index, value in sorted(layer_alphas.items())]
    named += [(f"part kept of layer {index}", value) for index, value in sorted(layer_keeps.items())]
    for name, value in named:
        if not 0.0 <= value <= 1.0:
            raise SoupError(f"{name} must be between 0 and 1, got {value}")
    import_ultralytics()
    from ultralytics.utils.torch_utils import torch_load

    current_path, base_path = _weights_file(current, "current"), _weights_file(base, "base")
    target = _output_file(out, {"current": current_path, "base": base_path})
    current_ckpt = _load(current_path, "current", torch_load)
    fine, coco = (
        _network(current_ckpt, current_path),
        _network(_load(base_path, "base", torch_load), base_path),
    )
    layers = len(fine.model)
    outside = sorted(index for index in {*layer_alphas, *layer_keeps} if not 0 <= index < layers)
    if outside:
        raise SoupError(f"{current_path} has layers 0-{layers - 1}: no layer {', '.join(map(str, outside))}")
    if class_alpha is None:
        class_alpha = layer_alphas.get(layers - 1, alpha)  # the rows are the head's
    fine_names, coco_names = dict(fine.names), dict(coco.names)
    by_name = {name: index for index, name in coco_names.items()}
    pairs = [(ours, by_name[name]) for ours, name in sorted(fine_names.items()) if name in by_name]
    if not pairs:
        raise SoupError(f"{current_path} and {base_path} share no class name: nothing to take from the base")
    unknown = sorted(set(row_alphas) - {fine_names[ours] for ours, _ in pairs})
    if unknown:
        raise SoupError(f"no class both models know is named {', '.join(unknown)}")
    row_alpha = {ours: row_alphas.get(fine_names[ours], class_alpha) for ours, _ in pairs}

    fine_state, coco_state = fine.state_dict(), coco.state_dict()
    rows_keys = class_rows(fine)
    _check_same_network(fine_state, coco_state, rows_keys, current_path, base_path)
    mixed: dict[str, Any] = {}
    for key, ours in fine_state.items():
        theirs = coco_state[key]
        if not ours.is_floating_point():
            mixed[key] = ours.clone()
        elif key in rows_keys:  # one row per class: the shared ones move by class_alpha, the others stay
            rows = ours.float().clone()
            for ours_row, coco_row in pairs:
                rows[ours_row] = torch.lerp(rows[ours_row], theirs[coco_row].float(), row_alpha[ours_row])
            mixed[key] = rows
        else:
            layer = _layer_of(key)
            kept = trim(ours.float(), theirs.float(), layer_keeps[layer]) if layer in layer_keeps else ours
            mixed[key] = torch.lerp(kept.float(), theirs.float(), layer_alphas.get(layer, alpha))
    soup = copy.deepcopy(fine).float()
    soup.load_state_dict(mixed)
    fine_layers, coco_layers = dict(fine.float().named_modules()), dict(coco.float().named_modules())
    for name, layer in soup.named_modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            own = layer_alphas.get(_layer_of(name), alpha)
            blend_batchnorm(fine_layers[name], coco_layers[name], own, into=layer)

    ckpt = {
        key: current_ckpt[key]
        for key in ("date", "version", "license", "docs", "train_args")
        if key in current_ckpt
    }
    ckpt.update(
        model=soup.half().eval(),
        ema=None,
        optimizer=None,
        epoch=-1,
        soup={
            "current": str(current_path),
            "current_sha256": sha256_of(current_path),
            "base": str(base_path),
            "base_sha256": sha256_of(base_path),
            "alpha": alpha,
            "class_alpha": class_alpha,
            "row_alphas": row_alphas,
            "layer_alphas": layer_alphas,
            "layer_keeps": layer_keeps,
        },
    )
    _write_atomically(ckpt, target)
    shared = tuple(fine_names[ours] for ours, _ in pairs)
    log.info(
        "wrote %s: %.2f of the way from %s to %s (class rows of %s at %.2f)",
        target,
        alpha,
        current_path,
        base_path,
        ", ".join(shared),
        class_alpha,
    )
    return Soup(target, alpha, class_alpha, row_alphas, layer_alphas, layer_keeps, shared)


def trim(current: Any, base: Any, keep: float) -> Any:
    """current with only the largest-magnitude fraction `keep` of its change from base kept (at least one
    entry when keep > 0; ties at the cut are kept); every other entry is base's."""
    import torch

    change = current - base
    count = math.ceil(keep * change.numel())
    if count == 0:
        return base.clone()
    magnitude = change.abs()
    cut = torch.topk(magnitude.flatten(), count).values.min()
    return torch.where(magnitude >= cut, current, base)


def _layer_of(name: str) -> int:
    """The index in the network's layer list of a weight or module named 'model.<index>...'."""
    return int(name.split(".")[1])


def blend_batchnorm(a: Any, b: Any, alpha: float, *, into: Any) -> None:
    """Set BatchNorm `into` to compute, in eval mode, (1 - alpha) * a(x) + alpha * b(x).

    Each eval-mode BatchNorm is y = s * x + t per channel; s and t are interpolated and written back
    over a's running statistics (kept, so that training from the result starts from real ones).
    """
    import torch

    def affine(layer: Any) -> tuple[Any, Any]:
        scale = layer.weight.float() / torch.sqrt(layer.running_var.float() + layer.eps)
        return scale, layer.bias.float() - layer.running_mean.float() * scale

    scale_a, shift_a = affine(a)
    scale_b, shift_b = affine(b)
    scale, shift = torch.lerp(scale_a, scale_b, alpha), torch.lerp(shift_a, shift_b, alpha)
    with torch.no_grad():
        into.running_mean.copy_(a.running_mean)
        into.running_var.copy_(a.running_var)
        into.weight.copy_(scale * torch.sqrt(a.running_var.float() + into.eps))
        into.bias.copy_(shift + a.running_mean.float() * scale)


def class_rows(model: Any) -> set[str]:
    """The names of the weights with one row per class: the last convolution of each of the detection
    head's class branches (both heads of an end-to-end model). Matched by name, never by position."""
    head = model.model[-1]
    convs = [branch[-1] for attr in ("cv3", "one2one_cv3") for branch in getattr(head, attr, ())]
    found = {id(tensor) for conv in convs for tensor in conv.parameters()}
    return {name for name, tensor in model.named_parameters() if id(tensor) in found}


def _check_same_network(
    ours: dict[str, Any], theirs: dict[str, Any], rows_keys: set[str], current: Path, base: Path
) -> None:
    """Refuse two networks whose weights are not one for one (only the class score rows may differ,
    and only in their number of rows)."""
    if ours.keys() != theirs.keys():
        only = sorted(ours.keys() ^ theirs.keys())
        raise SoupError(
            f"{current} and {base} are not the same network ({len(only)} weights only in one, e.g. "
            f"{only[0]}): interpolate only weights fine-tuned from the base"
        )
    for key, tensor in ours.items():
        other = theirs[key]
        same = other.shape[1:] == tensor.shape[1:] if key in rows_keys else other.shape == tensor.shape
        if not same:
            raise SoupError(
                f"{current} and {base} are not the same network ({key}: {tuple(tensor.shape)} against "
                f"{tuple(other.shape)}): interpolate only weights fine-tuned from the base"
            )


def _network(ckpt: Any, path: Path) -> Any:
    network = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if network is None or not hasattr(network, "names"):
        raise SoupError(f"{path}: not an ultralytics detector checkpoint")
    return network


def _load(path: Path, role: str, torch_load: Any) -> Any:
    try:
        return torch_load(path, map_location="cpu")
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise SoupError(f"cannot load {role} weights {path}: {exc}") from exc


def _output_file(out: str | os.PathLike[str], inputs: Mapping[str, Path]) -> Path:
    """out as the file to write, its folder made; SoupError naming it when it is a folder, one of the
    inputs (by role) or somewhere no file can be made."""
    target = Path(out)
    if target.is_dir():
        raise SoupError(f"output {target}: a folder, not a .pt file")
    for role, weights in inputs.items():
        if target.resolve() == weights.resolve() or (target.exists() and target.samefile(weights)):
            raise SoupError(f"output {target} is the {role} weights: write the soup to another file")
    if is_site_model(target):
        raise SoupError(
            f"output {target} is a site's model: write the soup to another file and `gridpatrol model "
            "promote` it (promote and rollback alone replace it, and record it)"
        )
    folder = next(f for f in target.absolute().parents if f.exists())  # the root always exists
    if not folder.is_dir():
        raise SoupError(f"output {target}: {folder} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SoupError(f"output {target}: cannot make its folder ({exc.strerror or exc})") from None
    return target


def _write_atomically(ckpt: dict[str, Any], target: Path) -> None:
    """torch.save(ckpt) to target through a temporary file beside it, replaced over target only once
    whole: a failed write (disk full, a file-size limit) leaves what was there before."""
    import torch

    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # made as any new file (the umask's mode)
    try:
        with tmp.open("wb") as fh:
            fh.write(buffer.getbuffer())
        os.replace(tmp, target)
    except OSError as exc:
        raise SoupError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _weights_file(path: str | os.PathLike[str], role: str) -> Path:
    weights = Path(path)
    if not weights.is_file():
        raise SoupError(f"{role} weights not found: {weights}")
    return weights

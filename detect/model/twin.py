"""Added class branches: the COCO model whole, with garbage learned beside it instead of over it.

Fine-tuning the whole network on street photos taught it garbage and made it forget the COCO kinds the
rules use (models/MODEL_CARD.md). Here nothing of the COCO model changes: its backbone, neck, box branches
and the score rows of the kinds kept are frozen, BatchNorms included. Beside each class branch of its head
(one per scale, in both the one-to-many and the one-to-one head) an added branch of the same shape scores
the classes the COCO model does not know (garbage, garbage_bin, overflow), reading the same features; only
the added branches are trained. The kinds kept are then the COCO model's own outputs, and the question is
how well garbage can be found from the COCO model's features through its class-agnostic box branch.

A `TwinBranch` is an ordinary module of the head (its output is the two branches' scores side by side), so
the network stays one ultralytics DetectionModel: prediction, validation, training and export work as for
any other. Loading such weights needs this module importable (gridpatrol installed), as for any custom
module in a pickled ultralytics checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect import SetupError

log = logging.getLogger(__name__)

INITS = ("base", "current")


class TwinError(SetupError):
    """Weights that cannot be given added branches; the message names them and why."""


def _nn() -> Any:
    from detect.backends import import_ultralytics

    import_ultralytics()
    import torch

    return torch


torch = _nn()  # the class below is a torch module: importing this module imports torch, once


class TwinBranch(torch.nn.Module):  # type: ignore[misc,name-defined]
    """Two class branches reading the same feature map; their scores side by side (kept, then added)."""

    def __init__(self, kept: Any, added: Any) -> None:
        super().__init__()
        self.kept = kept
        self.added = added

    def forward(self, x: Any) -> Any:
        return torch.cat((self.kept(x), self.added(x)), 1)


@dataclass(frozen=True, slots=True)
class Twin:
    """What `add_branches` wrote."""

    out: Path
    kept: tuple[str, ...]  # classes scored by the base's own rows, in the output's order
    added: tuple[str, ...]  # classes scored by the added branches
    init: str


def _load(path: Path, what: str) -> Any:
    from detect.backends import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.torch_utils import torch_load

    if not path.is_file():
        raise TwinError(f"{what} {path}: no such file")
    try:
        ckpt = torch_load(path, map_location="cpu")
        model = ckpt.get("ema") or ckpt["model"]
        head = model.model[-1]
        names = dict(model.names)
        head.cv3  # noqa: B018 - a detection head
    except Exception as exc:  # noqa: BLE001 - any unreadable file is refused by name
        raise TwinError(f"{what} {path}: not ultralytics detection weights ({exc})") from None
    return model.float(), [names[i] for i in range(len(names))]


def add_branches(
    current: str | os.PathLike[str],
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    init: str = "base",
) -> Twin:
    """Write base (the COCO model) with added class branches for current's classes that base lacks.

    The output's classes are current's, in current's order, which must list the kinds both know first (as
    datasets/gridpatrol-street.yaml does). init "base" starts each added branch as a copy of base's class
    branch with new score rows (the usual prior bias); "current" as a copy of current's branch and rows.
    """
    if init not in INITS:
        raise TwinError(f"unknown init '{init}' (one of {', '.join(INITS)})")
    base_model, base_names = _load(Path(base), "base weights")
    current_model, names = _load(Path(current), "current weights")
    kept = [n for n in names if n in base_names]
    added = [n for n in names if n not in base_names]
    if not added:
        raise TwinError(f"current weights {current}: every class is one the base knows; nothing to add")
    if names != kept + added:
        raise TwinError(f"current weights {current}: the classes the base knows must come first ({names})")
    rows = [base_names.index(n) for n in kept]
    model = copy.deepcopy(base_model)
    head = model.model[-1]
    current_head = current_model.model[-1]
    for attr in ("cv3", "one2one_cv3"):
        branches = getattr(head, attr, None)
        if branches is None:
            continue
        for i, branch in enumerate(branches):
            kept_branch = copy.deepcopy(branch)
            kept_branch[-1] = _rows(branch[-1], rows)
            if init == "current":
                source = getattr(current_head, attr)[i]
                added_branch = copy.deepcopy(source)
                added_branch[-1] = _rows(source[-1], [names.index(n) for n in added])
            else:
                added_branch = copy.deepcopy(branch)
                added_branch[-1] = _prior_rows(branch[-1], len(added), float(head.stride[i]), len(names))
            branches[i] = TwinBranch(kept_branch, added_branch)
    head.nc = len(names)
    head.no = head.nc + head.reg_max * 4
    model.nc = len(names)
    model.names = dict(enumerate(names))
    model.yaml = {**model.yaml, "nc": len(names)}
    model.twin = {"kept": kept, "added": added, "init": init}
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.half(), "ema": None, "twin": model.twin, "train_args": {}}, out_path)
    log.info("wrote %s: %s kept from %s, %s added (init %s)", out_path, kept, base, added, init)
    return Twin(out=out_path, kept=tuple(kept), added=tuple(added), init=init)


def _rows(conv: Any, rows: list[int]) -> Any:
    new = torch.nn.Conv2d(conv.in_channels, len(rows), 1)
    with torch.no_grad():
        new.weight.copy_(conv.weight[rows])
        new.bias.copy_(conv.bias[rows])
    return new


def _prior_rows(conv: Any, count: int, stride: float, nc: int) -> Any:
    """New score rows with ultralytics' prior bias (about 0.01 objects per 640 px image, Detect.bias_init)."""
    new = torch.nn.Conv2d(conv.in_channels, count, 1)
    with torch.no_grad():
        new.bias.fill_(math.log(5 / nc / (640 / stride) ** 2))
    return new


def is_twin(model: Any) -> bool:
    return any(isinstance(m, TwinBranch) for m in model.modules())


def frozen_layers(model: Any) -> list[str]:
    """ultralytics `freeze` entries ("model.<entry>." prefixes) that freeze all but the added branches."""
    head_index = len(model.model) - 1
    frozen = [str(i) for i in range(head_index)]
    head = model.model[-1]
    for attr in ("cv2", "one2one_cv2"):
        if getattr(head, attr, None) is not None:
            frozen.append(f"{head_index}.{attr}")
    for attr in ("cv3", "one2one_cv3"):
        for i, branch in enumerate(getattr(head, attr, None) or []):
            frozen.append(
                f"{head_index}.{attr}.{i}.kept"
                if isinstance(branch, TwinBranch)
                else f"{head_index}.{attr}.{i}"
            )
    return frozen

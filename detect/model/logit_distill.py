"""Logit distillation: the model being trained keeps answering like the COCO model on every anchor.

Fine-tuning on street photos taught the model garbage and made it forget what the COCO model knew about
the kinds those photos rarely show (tables, chairs, umbrellas, two-wheelers: models/MODEL_CARD.md,
"Accuracy with human labels"). Pseudo-labels only carry the COCO model's boxes above a threshold; here the
COCO model (the teacher) runs on every training batch and the student's raw outputs for the kinds both
know are pulled towards the teacher's on every anchor of every image, both heads of an end-to-end model:

- class scores: the Bernoulli KL divergence between the teacher's and the student's probabilities,
  summed over anchors and shared kinds and divided by the teacher's probability mass (so that, like the
  detection loss's own class term, it does not grow with the number of empty anchors);
- boxes: the L1 distance between the two heads' box outputs, weighted by the teacher's best shared-kind
  probability at that anchor (so that only where the teacher sees one of those kinds does its box count).

The classes only the student has (garbage, bins) get no teacher term. The teacher and the student must
share input size and strides, so that their anchors are the same cells; both YOLO26 heads (no DFL,
4 box outputs per anchor) are supported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect import SetupError

log = logging.getLogger(__name__)


class DistillationError(SetupError):
    """A teacher that cannot be distilled from; the message names the weights and why."""


@dataclass(frozen=True, slots=True)
class ClassPairs:
    """The kinds student and teacher share, as index lists in the same order (matched by name)."""

    student: tuple[int, ...]
    teacher: tuple[int, ...]
    names: tuple[str, ...]


def class_pairs(student_names: Mapping[int, str], teacher_names: Mapping[int, str]) -> ClassPairs:
    """Student and teacher classes with the same name, in the student's order."""
    by_name = {name: index for index, name in teacher_names.items()}
    pairs = [(s, by_name[name], name) for s, name in sorted(student_names.items()) if name in by_name]
    if not pairs:
        raise DistillationError(
            f"the teacher's classes share no name with the model's ({', '.join(student_names.values())})"
        )
    student, teacher, names = zip(*pairs, strict=True)
    return ClassPairs(tuple(student), tuple(teacher), tuple(names))


def _branches(preds: Any) -> dict[str, Mapping[str, Any]]:
    """A head's raw outputs by branch: {'one2many': ..., 'one2one': ...} or {'': ...} for one head."""
    if isinstance(preds, tuple):  # a model in eval mode answers (decoded, raw)
        preds = preds[1]
    if isinstance(preds, Mapping) and "one2many" in preds:
        return {name: preds[name] for name in ("one2many", "one2one") if name in preds}
    return {"": preds}


class LogitDistillation:
    """A detection criterion plus the teacher's terms (see the module docstring).

    Called like the criterion it wraps: (preds, batch) -> (loss, items). The loss gains one element,
    weight x (class term + box term) x batch size, on the same footing as the detection loss's own
    elements (ultralytics multiplies those by the batch size too); items gain `kd_loss`.
    """

    def __init__(self, inner: Any, teacher: Any, pairs: ClassPairs, weight: float) -> None:
        import torch

        self.inner = inner
        self.teacher = teacher
        self.weight = weight
        self._student_index = torch.tensor(pairs.student)
        self._teacher_index = torch.tensor(pairs.teacher)

    def update(self) -> None:
        """The inner criterion's per-epoch update (an end-to-end head's branch weights)."""
        if hasattr(self.inner, "update"):
            self.inner.update()

    def __call__(self, preds: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        import torch

        with torch.no_grad():
            teacher_out = _branches(self.teacher(batch["img"]))
        student_out = _branches(preds)
        terms = [
            self.term(student_out[name], teacher_out[name]) for name in student_out if name in teacher_out
        ]
        if not terms:
            raise DistillationError("the teacher's head answers with branches the model does not have")
        kd = torch.stack(terms).mean()
        loss, items = self.inner(preds, batch)
        items = dict(items)
        items["kd_loss"] = kd.detach()
        scaled = (kd * self.weight * batch["img"].shape[0]).reshape(1).to(loss.dtype)
        return torch.cat([loss.reshape(-1), scaled]), items

    def term(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> Any:
        """The class term plus the box term of one branch."""
        import torch.nn.functional as F

        device = student["scores"].device
        s_logits = student["scores"].float().index_select(1, self._student_index.to(device))
        t_logits = teacher["scores"].float().index_select(1, self._teacher_index.to(device))
        if s_logits.shape != t_logits.shape:
            raise DistillationError(
                f"teacher and model anchors differ ({tuple(t_logits.shape)} against "
                f"{tuple(s_logits.shape)}): they need the same strides and input size"
            )
        # Bernoulli KL(teacher || student) from the logits (log-sigmoids: exact where p is near 0 or 1)
        t_prob = t_logits.sigmoid()
        kl = t_prob * (F.logsigmoid(t_logits) - F.logsigmoid(s_logits)) + (1 - t_prob) * (
            F.logsigmoid(-t_logits) - F.logsigmoid(-s_logits)
        )
        cls_term = kl.sum() / t_prob.sum().clamp(min=1.0)
        weight = t_prob.max(dim=1).values  # (batch, anchors)
        box_gap = (student["boxes"].float() - teacher["boxes"].float()).abs().sum(dim=1)
        box_term = (box_gap * weight).sum() / weight.sum().clamp(min=1.0)
        return cls_term + box_term


def load_teacher(path: Path, student: Any, device: Any) -> tuple[Any, ClassPairs]:
    """The teacher's model (eval mode, frozen, on device) and the classes it shares with student."""
    from ultralytics.nn.tasks import load_checkpoint

    try:
        teacher, _ = load_checkpoint(str(path), device=device)
    except Exception as exc:  # a file ultralytics cannot read: name it, whatever torch raised
        raise DistillationError(f"teacher weights {path} cannot be loaded: {exc}") from None
    teacher = teacher.float().to(device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    head, student_head = teacher.model[-1], student.model[-1]
    if getattr(head, "reg_max", 1) != 1 or getattr(student_head, "reg_max", 1) != 1:
        raise DistillationError(f"{path}: logit distillation needs heads without DFL (YOLO26), both sides")
    if [float(s) for s in head.stride] != [float(s) for s in student_head.stride]:
        raise DistillationError(f"{path}: the teacher's strides {head.stride.tolist()} are not the model's")
    pairs = class_pairs(student.names, teacher.names)
    log.info(
        "logit distillation from %s on %d shared classes: %s", path, len(pairs.names), ", ".join(pairs.names)
    )
    return teacher, pairs

"""A trained candidate made the site's model, or refused (`gridpatrol model promote|rollback`, issue 13).

A candidate (typically trained with `gridpatrol train --add-dataset` on the operators' reviews) and the
site's current model are scored on the same sets: the shipped val set and, when given, the reviews'
val split (frames of cameras never seen in training, labelled with the boxes operators spoke about
only: unlabelled objects count as false positives for both models alike). The promotion rule
(`PromotionRule`) is checked on each set and printed with the figures.

The site's model lives in a folder (default models/site/, `SiteModels`):

    <folder>/current.pt          the site's model; point the site config's model.weights at it
    <folder>/history/<sha16>.pt  every weights file that was ever current (the shipped one included)
    <folder>/promotions.jsonl    one JSON object a line: every promotion, refusal and rollback with the
                                 time (UTC), who (the OS user), the weights' SHA-256 before and after,
                                 the rule and the figures

Before the first promotion the site's model is the shipped one (detect.yolo.SHIPPED_WEIGHTS), which
configs/site.yaml names: that file keeps working untouched. Rollback undoes the last promotion still
in effect (promotions and rollbacks form a stack), restoring the weights that were current before it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detect import SetupError
from detect.model.evaluation import EvaluationReport, check_imgsz, evaluate, load_data
from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS

log = logging.getLogger(__name__)

DEFAULT_SITE_DIR = Path(__file__).resolve().parents[2] / "models" / "site"
CURRENT = "current.pt"
HISTORY = "history"
LOG = "promotions.jsonl"


class PromotionError(SetupError):
    """A promotion or rollback that cannot be made (refused by the rule, nothing to roll back, a
    missing file); the message names the reason or the path."""


@dataclass(frozen=True, slots=True)
class PromotionRule:
    """Not worse on any set: on each set the candidate's mAP50 is at least the current's minus
    map50_tolerance, and no class with labels in that set loses more than class_ap50_drop of AP50.

    The defaults leave room for the noise of a few hundred val images (one or two boxes found or
    missed move a rare class's AP50 by a few hundredths) and no more.
    """

    map50_tolerance: float = 0.01
    class_ap50_drop: float = 0.05

    def describe(self) -> str:
        return (
            "promote only when on every set the candidate's mAP50 >= the current's "
            f"{-self.map50_tolerance:+g} and no class with labels there loses more than "
            f"{self.class_ap50_drop:g} AP50"
        )


@dataclass(frozen=True, slots=True)
class SetComparison:
    """Both models on one set (same images, size and threshold)."""

    name: str  # "shipped val", "reviews val"
    current: EvaluationReport
    candidate: EvaluationReport

    def figures(self) -> dict[str, Any]:
        def one(report: EvaluationReport) -> dict[str, Any]:
            return {
                "model": report.model,
                "map50": _finite(report.map50),
                "ap50": {c.name: c.ap50 for c in report.classes if c.ap50 is not None},
            }

        return {
            "data": self.current.data,
            "split": self.current.split,
            "images": self.current.images,
            "imgsz": self.current.imgsz,
            "current": one(self.current),
            "candidate": one(self.candidate),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reasons: list[str] = field(default_factory=list)  # why refused (empty when accepted)
    notes: list[str] = field(default_factory=list)  # sets not measured, and why


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def judge(comparisons: Sequence[SetComparison], rule: PromotionRule, notes: Sequence[str] = ()) -> Verdict:
    """The rule over each set's figures (pure: no model runs here)."""
    reasons = []
    for comp in comparisons:
        # a class the site's model finds and the candidate cannot: unseen in a set without its labels
        lost = [n for n in comp.candidate.lacks if n not in comp.current.lacks]
        if lost:
            missing = ", ".join(lost)
            reasons.append(f"{comp.name}: the candidate has no class {missing} (the current model has)")
        cur, cand = comp.current.map50, comp.candidate.map50
        if math.isnan(cur) or math.isnan(cand):  # no label of any class the set names
            reasons.append(
                f"{comp.name}: nothing measured ({comp.current.data} [{comp.current.split}] has no labels "
                "of its classes)"
            )
            continue
        if cand < cur - rule.map50_tolerance - 1e-9:
            reasons.append(f"{comp.name}: mAP50 {cand:.3f} < current {cur:.3f} {-rule.map50_tolerance:+g}")
        candidate = comp.candidate.by_name()
        for c in comp.current.classes:
            other = candidate.get(c.name)
            if c.ap50 is None or other is None or other.ap50 is None:
                continue
            if c.ap50 - other.ap50 > rule.class_ap50_drop + 1e-9:
                reasons.append(
                    f"{comp.name}: {c.name} AP50 {other.ap50:.3f} < current {c.ap50:.3f} "
                    f"{-rule.class_ap50_drop:+g}"
                )
    return Verdict(accepted=not reasons, reasons=reasons, notes=list(notes))


def compare(
    candidate: str | os.PathLike[str],
    current: str | os.PathLike[str],
    *,
    data: Path,
    reviews: Path | None = None,
    imgsz: int = SHIPPED_IMGSZ,
    conf: float = 0.25,
) -> tuple[list[SetComparison], list[str]]:
    """Both models scored on data's val split and on the reviews export's val split (when it has
    frames); returns the comparisons and notes on the sets left out. Missing weights and an input size
    that cannot be scored at are named before anything is scored."""
    check_imgsz(imgsz)
    for role, weights in (("candidate", candidate), ("current", current)):
        if not Path(weights).is_file():
            raise PromotionError(f"{role} weights not found: {weights}")
    sets = [("shipped val", data)]
    notes = []
    if reviews is not None:
        review_yaml = Path(reviews) / "data.yaml"
        names, images = load_data(review_yaml, "val")
        base_names, _ = load_data(data, "val")
        if names != base_names:
            raise PromotionError(f"{review_yaml}: classes {names} are not {data}'s {base_names}")
        if images:
            sets.append(("reviews val", review_yaml))
        else:
            notes.append(f"reviews val: {review_yaml} has no val frames (one camera only): not measured")
    out = []
    for name, yaml_path in sets:
        log.info("%s: scoring the current model %s and the candidate %s", name, current, candidate)
        reports = [evaluate(m, yaml_path, imgsz=imgsz, conf=conf, split="val") for m in (current, candidate)]
        out.append(SetComparison(name, current=reports[0], candidate=reports[1]))
    return out, notes


def format_comparison(comparisons: Sequence[SetComparison], rule: PromotionRule, verdict: Verdict) -> str:
    """Per-class AP50 and mAP50 of both models side by side, each set, then the rule and the verdict."""

    def cell(v: float | None) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.3f}"

    def change(a: float | None, b: float | None) -> str:
        return "" if a is None or b is None or math.isnan(a) or math.isnan(b) else f"{b - a:+.3f}"

    lines = []
    for comp in comparisons:
        cur, cand = comp.current, comp.candidate
        lines.append(
            f"{comp.name}: {cur.data} [{cur.split}], {cur.images} images, imgsz {cur.imgsz}; "
            f"current {cur.model}, candidate {cand.model}"
        )
        lines.append(f"  {'class':<14} {'labels':>6} {'current':>8} {'candidate':>9} {'change':>7}")
        other = cand.by_name()
        for c in cur.classes:
            if not c.instances:
                continue
            b = other[c.name].ap50 if c.name in other else None
            lines.append(
                f"  {c.name:<14} {c.instances:>6} {cell(c.ap50):>8} {cell(b):>9} {change(c.ap50, b):>7}"
            )
        lines.append(
            f"  {'mAP50':<14} {'':>6} {cell(cur.map50):>8} {cell(cand.map50):>9} "
            f"{change(cur.map50, cand.map50):>7}"
        )
    lines.append(f"rule: {rule.describe()}")
    lines.extend(f"note: {n}" for n in verdict.notes)
    if verdict.accepted:
        lines.append("verdict: the candidate may be promoted")
    else:
        lines.append("verdict: refused: " + "; ".join(verdict.reasons))
    return "\n".join(lines)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SiteModels:
    """The site's model folder (see the module's docstring)."""

    folder: Path = DEFAULT_SITE_DIR

    @property
    def current_path(self) -> Path:
        return self.folder / CURRENT

    @property
    def log_path(self) -> Path:
        return self.folder / LOG

    def check(self) -> None:
        """PromotionError naming the folder when it cannot be the site's model folder (a file, or
        one that cannot be made) or its record cannot be written, before anything is scored."""
        if self.folder.exists() and not self.folder.is_dir():
            raise PromotionError(f"--site-dir {self.folder}: not a folder")
        try:
            (self.folder / HISTORY).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise PromotionError(f"--site-dir {self.folder}: cannot write there ({reason})") from None
        if self.log_path.exists() and not self.log_path.is_file():
            raise PromotionError(f"{self.log_path}: not a file (the record of promotions)")

    def current(self) -> Path:
        """The weights in effect: current.pt once something was promoted, the shipped weights before."""
        return self.current_path if self.current_path.is_file() else SHIPPED_WEIGHTS

    def records(self) -> list[dict[str, Any]]:
        """promotions.jsonl's records in order; PromotionError naming the file and the line of one that
        is not a record (a hand edit, a torn write): a rollback must not guess past it."""
        if not self.log_path.is_file():
            return []
        try:
            text = self.log_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PromotionError(f"cannot read {self.log_path}: {exc}") from None
        return [
            _parse_record(line, f"{self.log_path} line {number}")
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]

    def _keep(self, weights: Path, sha: str) -> Path:
        """history/<sha16>.pt holding weights (whose SHA-256 is sha); a copy there that is not them
        (damaged, replaced by hand) is copied again."""
        kept = self.folder / HISTORY / f"{sha[:16]}.pt"
        if kept.is_file() and sha256_of(kept) == sha:
            return kept
        if kept.exists():
            log.warning("%s is not the weights it is named after: copying %s there again", kept, weights)
        self._copy_checked(weights, kept, sha)
        return kept

    def _install(self, kept: Path, sha: str) -> None:
        self._copy_checked(kept, self.current_path, sha)

    @staticmethod
    def _copy_checked(source: Path, target: Path, sha: str) -> None:
        """Copy source over target through a temporary file beside it, replaced over target only when
        its SHA-256 is sha: a reader sees the old file or the whole new one, never a wrong one."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # made as any new file (the umask's mode)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp)
            copied = sha256_of(tmp)
            if copied != sha:
                raise PromotionError(
                    f"{source} changed while copied (sha256 {copied[:16]}, expected {sha[:16]}); "
                    f"{target} left as it was"
                )
            os.replace(tmp, target)
        except OSError as exc:
            raise PromotionError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _record(self, action: str, **fields: Any) -> dict[str, Any]:
        record = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": action,
            "who": _who(),
            **fields,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise PromotionError(f"cannot write {self.log_path}: {exc.strerror or exc}") from None
        return record

    def _install_recorded(
        self, kept: Path, sha: str, before: Path, before_sha: str, **record: Any
    ) -> dict[str, Any]:
        """Install kept (sha) as current.pt and record it; when the record cannot be written, the weights
        that were in effect (before, before_sha: current.pt, or the shipped ones when there was none)
        are put back, so that current.pt is always what the record says."""
        had_current = self.current_path.is_file()
        kept_before = self._keep(before, before_sha)
        self._install(kept, sha)
        try:
            return self._record(before_sha256=before_sha, after_sha256=sha, **record)
        except PromotionError as exc:
            if had_current:
                self._install(kept_before, before_sha)
            else:
                self.current_path.unlink(missing_ok=True)
            raise PromotionError(f"{exc}; nothing changed: the site's model is {before} again") from None

    def promote(
        self,
        candidate: Path,
        comparisons: Sequence[SetComparison],
        rule: PromotionRule,
        verdict: Verdict,
    ) -> dict[str, Any]:
        """Install candidate as current.pt when the verdict accepts it; either way the decision is
        recorded. PromotionError (after recording the refusal) when refused."""
        candidate = Path(candidate)
        if not candidate.is_file():
            raise PromotionError(f"candidate weights not found: {candidate}")
        before = self.current()
        before_sha, after_sha = sha256_of(before), sha256_of(candidate)
        if before_sha == after_sha:
            raise PromotionError(f"{candidate} is the site's model already (sha256 {after_sha[:16]})")
        fields = {
            "candidate": str(candidate.resolve()),
            "rule": {"map50_tolerance": rule.map50_tolerance, "class_ap50_drop": rule.class_ap50_drop},
            "figures": {c.name: c.figures() for c in comparisons},
            "notes": verdict.notes,
        }
        if not verdict.accepted:
            self._record(
                "refused",
                before_sha256=before_sha,
                after_sha256=before_sha,
                reasons=verdict.reasons,
                **fields,
            )
            raise PromotionError("promotion refused: " + "; ".join(verdict.reasons))
        kept = self._keep(candidate, after_sha)
        record = self._install_recorded(
            kept, after_sha, before, before_sha, action="promote", previous=str(before), **fields
        )
        log.info("promoted %s (sha256 %s) over %s", candidate, after_sha[:16], before_sha[:16])
        return record

    def rollback(self) -> dict[str, Any]:
        """Restore the weights that were current before the last promotion still in effect; refused
        when their kept copy is missing or is not them (its SHA-256 is not the recorded one)."""
        stack: list[str] = []
        for record in self.records():
            if record["action"] == "promote":
                stack.append(record["before_sha256"])
            elif record["action"] == "rollback" and stack:
                stack.pop()
        if not stack or not self.current_path.is_file():
            raise PromotionError(f"nothing to roll back: no promotion in effect in {self.log_path}")
        target = stack[-1]
        kept = self.folder / HISTORY / f"{target[:16]}.pt"
        if not kept.is_file():
            raise PromotionError(f"the previous weights (sha256 {target[:16]}) are missing: {kept}")
        found = sha256_of(kept)
        if found != target:
            raise PromotionError(
                f"the previous weights' copy {kept} is damaged (sha256 {found[:16]}, recorded "
                f"{target[:16]}): nothing rolled back"
            )
        before_sha = sha256_of(self.current_path)
        record = self._install_recorded(
            kept, target, self.current_path, before_sha, action="rollback", restored=str(kept)
        )
        log.info("rolled back %s -> %s", before_sha[:16], target[:16])
        return record


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _parse_record(line: str, where: str) -> dict[str, Any]:
    """One line of promotions.jsonl; PromotionError naming where when it is not a record."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PromotionError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("action"), str):
        raise PromotionError(f"{where}: not a record (a JSON object with an 'action')")
    if record["action"] in ("promote", "rollback"):
        for key in ("before_sha256", "after_sha256"):
            if not isinstance(record.get(key), str) or not _SHA256.fullmatch(record[key]):
                raise PromotionError(f"{where}: a {record['action']} record without a SHA-256 {key}")
    return record


def is_site_model(path: str | os.PathLike[str]) -> bool:
    """Whether path is a site folder's current.pt (the default folder's, or one beside a history/ or a
    promotions.jsonl): only promote and rollback may write it, so that the record says what it is."""
    path = Path(path)
    if path.name != CURRENT:
        return False
    folder = path.parent
    return (
        folder.resolve() == DEFAULT_SITE_DIR.resolve()
        or (folder / LOG).exists()
        or (folder / HISTORY).is_dir()
    )


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"

"""COCO photos with human labels, imported from a snapshot of a public repository that holds them.

The shipped detector was fine-tuned on street photos in which umbrellas, chairs and tables hardly
appear, so it forgot them. Two small sets of COCO photos, labelled by COCO's annotators, measure that
and were tried for putting them back (models/MODEL_CARD.md):

- COCO val2017's first 128 photos: the held-out evaluation set (datasets/coco-val128.yaml). The COCO
  base model was trained on train2017, so it never saw them either.
- COCO train2017's first 128 photos: replayed in training (datasets/gridpatrol-street-replay.yaml).

Both come from github.com/lightly-ai/coco128_yolo at a pinned commit. `import_coco128` reads that
repository's git folder (a clone, or the snapshot the project's tools fetch), checks the commit is
there, and writes the YOLO layout the dataset recipes read:

    <out>/images/{train2017,val2017}/*.jpg
    <out>/labels/{train2017,val2017}/*.txt   COCO's 80 class ids
    <out>/data.yaml                          names
    <out>/SOURCE.md                          where it came from, which commit, the licences

Nothing downloads at run time: on a machine without the import, building either recipe fails naming the
missing shared/coco128/data.yaml, and each recipe's header says how to import it.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from detect.model.dataset import DatasetError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "shared" / "coco128"
COCO128_REPOSITORY = "github.com/lightly-ai/coco128_yolo"
COCO128_COMMIT = "6d6f7a059ea63efffdbe48aca2d52c04d4c510e9"
SPLITS = ("train2017", "val2017")
_MEMBERS = ("images", "object_detection/labels", "object_detection/config.yaml")

_SOURCE_MD = """# coco128: COCO's first 128 train2017 and val2017 photos, with COCO's boxes

- From: {repository} at commit {commit} (imported by `gridpatrol dataset coco128`).
- Photos: COCO 2017 (Lin et al., "Microsoft COCO: Common Objects in Context", 2014). Each photo keeps the
  Flickr licence COCO lists for it in instances_{{train,val}}2017.json (Creative Commons licences).
- Labels: COCO's annotations, CC BY 4.0 (the COCO Consortium), converted to YOLO boxes with COCO's 80
  contiguous class ids (data.yaml).
- Use in gridpatrol: val2017 is held out for evaluation (datasets/coco-val128.yaml), train2017 is replayed
  in training (datasets/gridpatrol-street-replay.yaml). Never commit these files.
"""


@dataclass(frozen=True, slots=True)
class ImportResult:
    out_dir: Path
    images: dict[str, int]  # split -> photos
    imported: bool  # False: the same commit was there already


def import_coco128(snapshot: Path, out: Path = DEFAULT_OUT, *, commit: str = COCO128_COMMIT) -> ImportResult:
    """Write coco128's photos, labels and names from a git folder of its repository into `out`."""
    snapshot = Path(snapshot)
    if not snapshot.exists():
        raise DatasetError(f"coco128 snapshot not found: {snapshot}")
    source_md = out / "SOURCE.md"
    if source_md.is_file() and commit in source_md.read_text(encoding="utf-8"):
        return ImportResult(out, _count(out), imported=False)
    archive = _git_archive(snapshot, commit)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".coco128-", dir=out.parent) as tmp:
        staging = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")
        config = staging / "object_detection" / "config.yaml"
        try:
            names = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("names")
        except (OSError, yaml.YAMLError) as exc:
            raise DatasetError(f"{snapshot} at {commit}: object_detection/config.yaml: {exc}") from None
        if not isinstance(names, dict | list) or len(names) != 80:
            raise DatasetError(f"{snapshot} at {commit}: object_detection/config.yaml has no 80 COCO names")
        built = staging / "coco128"
        built.mkdir()
        shutil.move(staging / "images", built / "images")
        shutil.move(staging / "object_detection" / "labels", built / "labels")
        (built / "data.yaml").write_text(
            yaml.safe_dump({"names": names}, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        (built / "SOURCE.md").write_text(
            _SOURCE_MD.format(repository=COCO128_REPOSITORY, commit=commit), encoding="utf-8"
        )
        counts = _count(built)
        if set(counts) != set(SPLITS) or not all(counts.values()):
            raise DatasetError(f"{snapshot} at {commit}: expected photos in images/{SPLITS}, found {counts}")
        if out.exists():
            shutil.rmtree(out)
        built.rename(out)
    log.info("coco128: %s photos from %s at %s into %s", counts, snapshot, commit[:12], out)
    return ImportResult(out, counts, imported=True)


def _git_archive(snapshot: Path, commit: str) -> bytes:
    git_dir = snapshot / ".git" if (snapshot / ".git").exists() else snapshot
    if shutil.which("git") is None:
        raise DatasetError("git is needed to read the coco128 snapshot and is not installed")
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", "--format=tar", commit, *_MEMBERS],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DatasetError(
            f"{snapshot}: not a git folder of {COCO128_REPOSITORY} holding commit {commit}"
            f" ({why[-1] if why else f'git exit {proc.returncode}'})"
        )
    return proc.stdout


def _count(root: Path) -> dict[str, int]:
    folder = root / "images"
    if not folder.is_dir():
        return {}
    return {
        d.name: sum(1 for f in d.iterdir() if f.suffix.lower() == ".jpg") for d in sorted(folder.iterdir())
    }

"""Held-out street samples: real photos and footage that are not in ../shared, fetched from Debian.

The recipe (datasets/street-samples.yaml) names files inside a Debian binary package by their path
in the package and their SHA-256. `fetch_samples` gets the package with `apt-get download` (the
machine's configured mirror: a package registry, reachable where PyPI is) or reads a .deb the user
already has, pulls the named files out of its data archive (a .deb is an `ar` archive holding a
tar; read here with the standard library, so dpkg is not needed), checks each file's hash and
writes it into the output folder. Files already there with the right hash are not fetched again.

Nothing in the product downloads these at run time; tests and the model card's held-out figures
read them from the output folder and say how to fetch them when they are missing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from detect.backends import sha256_file
from detect.model.dataset import DatasetError, _Strict, load_yaml_model

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "datasets" / "street-samples.yaml"
DEFAULT_OUT = REPO / "build" / "street-samples"
_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60  # bytes: name 16, mtime 12, uid 6, gid 6, mode 8, size 10, magic 2


class SampleFile(_Strict):
    member: str = Field(min_length=1, description="path inside the package, e.g. usr/share/doc/...")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    what: str = ""


class SampleRecipe(_Strict):
    package: str = Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$", description="Debian binary package name")
    files: dict[str, SampleFile] = Field(min_length=1, description="file name in the output folder -> source")


@dataclass(frozen=True, slots=True)
class FetchResult:
    out_dir: Path
    files: dict[str, Path]
    fetched: list[str]  # names written this time (the others were there already)


def load_sample_recipe(path: Path = DEFAULT_RECIPE) -> SampleRecipe:
    recipe, _ = load_yaml_model(Path(path), SampleRecipe, "street-samples recipe")
    for name in recipe.files:
        if Path(name).name != name or name.startswith("."):
            raise DatasetError(f"{path}: files.{name}: a plain file name is needed")
    return recipe


def missing_samples(recipe: SampleRecipe, out_dir: Path) -> list[str]:
    """Names whose file is absent from out_dir or differs from the recipe's hash."""
    return [
        name
        for name, spec in recipe.files.items()
        if not (out_dir / name).is_file() or sha256_file(out_dir / name) != spec.sha256
    ]


def fetch_samples(
    recipe_path: Path = DEFAULT_RECIPE, out_dir: Path = DEFAULT_OUT, *, deb: Path | None = None
) -> FetchResult:
    """Make out_dir hold every file of the recipe, checked; download the package only if one is missing."""
    recipe = load_sample_recipe(recipe_path)
    out_dir = Path(out_dir)
    missing = missing_samples(recipe, out_dir)
    files = {name: out_dir / name for name in recipe.files}
    if not missing:
        log.info("street samples: all %d files present in %s", len(files), out_dir)
        return FetchResult(out_dir=out_dir, files=files, fetched=[])
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {recipe.files[name].member.removeprefix("./"): name for name in missing}
    with (
        tempfile.TemporaryDirectory(prefix="gridpatrol-samples-") as download,
        tempfile.TemporaryDirectory(prefix=".staging-", dir=out_dir) as staging,
    ):
        package = Path(deb) if deb is not None else download_package(recipe.package, Path(download))
        found = _extract_members(package, wanted, Path(staging))
        absent = sorted(set(wanted) - set(found))
        if absent:
            raise DatasetError(f"{package}: has no {', '.join(absent)} (is it the {recipe.package} package?)")
        for member, staged in found.items():  # all checked before any is written
            expected = recipe.files[wanted[member]].sha256
            if (digest := sha256_file(staged)) != expected:
                raise DatasetError(f"{package}: {member} has sha256 {digest}, the recipe expects {expected}")
        for member, staged in found.items():
            staged.replace(out_dir / wanted[member])  # staging is inside out_dir: an atomic rename
            log.info("street samples: wrote %s", out_dir / wanted[member])
    return FetchResult(out_dir=out_dir, files=files, fetched=sorted(missing))


def download_package(package: str, into: Path) -> Path:
    """`apt-get download PACKAGE` into a folder; the .deb's path. DatasetError says why it failed."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise DatasetError(f"apt-get not found: download the {package} .deb yourself and pass it with --deb")
    log.info("street samples: apt-get download %s", package)
    done = subprocess.run([apt, "download", package], cwd=into, capture_output=True, text=True)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no .deb written"]
        raise DatasetError(f"apt-get download {package} failed: {reason[0]} (or pass a .deb with --deb)")
    return debs[0]


def _extract_members(deb: Path, wanted: dict[str, str], staging: Path) -> dict[str, Path]:
    """Copy the wanted members (path in the package -> file name) of a .deb's data archive to staging."""
    if not deb.is_file():
        raise DatasetError(f"package file not found: {deb}")
    found: dict[str, Path] = {}
    with deb.open("rb") as fh:
        data = _ar_member(fh, deb, prefix="data.tar")
        try:
            with tarfile.open(fileobj=data, mode="r|*") as tar:  # type: ignore[call-overload]
                for entry in tar:
                    member = entry.name.removeprefix("./")
                    source = tar.extractfile(entry) if member in wanted and entry.isfile() else None
                    if source is None:
                        continue
                    target = staging / wanted[member]
                    with target.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    found[member] = target
                    if len(found) == len(wanted):
                        break
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"{deb}: its data archive cannot be read: {exc}") from exc
    return found


class _Window:
    """A read-only view of `size` bytes of a file from its current position (what tarfile reads)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._left = fh, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        block = self._fh.read(n)
        self._left -= len(block)
        return block


def _ar_member(fh: BinaryIO, deb: Path, *, prefix: str) -> _Window:
    """The first member of an ar archive whose name starts with prefix, positioned for reading."""
    if fh.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise DatasetError(f"{deb}: not a Debian package (no ar header)")
    while header := fh.read(_AR_HEADER):
        if len(header) < _AR_HEADER or header[58:60] != b"`\n":
            break
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            break
        if name.startswith(prefix):
            if name.endswith(".zst"):
                raise DatasetError(f"{deb}: {name} is zstd-compressed, which this Python cannot read")
            return _Window(fh, size)
        fh.seek(size + (size % 2), 1)  # members are padded to an even length
    raise DatasetError(f"{deb}: not a Debian package (no {prefix}* member)")

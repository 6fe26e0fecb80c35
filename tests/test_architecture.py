"""The house, checked: what `gridpatrol serve` loads, and the import contracts (.importlinter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The CLI registers the model workshop's commands (detect.model.commands), a light module that imports
# the workshop only inside its handlers; the camera registry's routes validate cameras with the site
# config's own models (detect.config: pydantic and yaml) and their stream URLs with streams.urls (the
# standard library only); nothing else of detect or streams may load.
LIGHT_DETECT = {"detect", "detect.config", "detect.model", "detect.model.commands"}
LIGHT_STREAMS = {"streams", "streams.urls"}


def test_serve_without_worker_does_not_import_torch(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from api.cli.main import build_parser
        build_parser().parse_args(["serve", "--no-worker"])
        from api.http.app import create_app
        from api.settings import Settings
        create_app(Settings(data_dir={str(tmp_path)!r}), run_worker=False)
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("torch", "ultralytics", "cv2", "openvino", "onnxruntime")
            or (m.split(".")[0] == "detect" and m not in {sorted(LIGHT_DETECT)!r})
            or (m.split(".")[0] == "streams" and m not in {sorted(LIGHT_STREAMS)!r})
        )
        print("HEAVY", heavy)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_import_contracts_hold() -> None:
    """streams imports neither detect nor api; detect does not import api; the detect runtime does not
    import the model workshop; api's domain rooms import neither fastapi nor detect (see .importlinter)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.fail("lint-imports (import-linter) is not installed: pip install -e '.[dev]'")
    command = [str(lint_imports), "--no-cache"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_runtime_module_is_under_the_workshop_contract() -> None:
    """A new module of the detect runtime is held to "does not import detect.model" too."""
    config = (REPO / ".importlinter").read_text()
    section = config.split("[importlinter:contract:runtime-no-workshop]")[1].split("forbidden_modules")[0]
    listed = {line.strip() for line in section.splitlines() if line.strip().startswith("detect.")}
    runtime = {f"detect.{p.stem}" for p in (REPO / "detect").glob("*.py") if p.stem != "__init__"}
    assert runtime == listed

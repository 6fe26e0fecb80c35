"""A failed job's stored error never carries a URL's secrets, whatever raised it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from api.accounts.accounts import SYSTEM
from api.jobs.uploads import ReceivedFile, ReceivedForm, register_upload
from api.jobs.worker import Pipeline, Worker
from api.services import Services
from api.storage.models import Job
from detect.config import ConfigError
from tests.api.api_testkit import make_settings

PASSWORD = "s3cr3t-Pa55"
TOKEN = "t0k3n-Zq9"
URL = f"rtsp://admin:{PASSWORD}@10.0.0.5/live?token={TOKEN}"
MASKED = "rtsp://admin:***@10.0.0.5/live?token=***"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def _queue_upload(services: Services, tmp_path: Path) -> int:
    data = MP4_HEAD + b"footage" * 100
    path = tmp_path / "clip.part"
    path.write_bytes(data)
    received = ReceivedFile("file", "clip.mp4", path, len(data), hashlib.sha256(data).hexdigest(), data[:512])
    with services.factory() as session:
        result = register_upload(
            session,
            ReceivedForm(files={"file": received}),
            uploads_dir=services.settings.uploads_dir,
            principal=SYSTEM,
        )
        session.commit()
        return result.job.id


def _failing_pipeline(error: Exception) -> Pipeline:
    def detect_footage(
        input: str | Path,
        config: Any,
        *,
        out_dir: Path,
        camera_id: str | None = None,
        start_time: datetime | None = None,
        source_id: str | None = None,
        progress: Callable[[float], None] | None = None,
        track: Path | None = None,
    ) -> Iterator[Any]:
        raise error
        yield

    return detect_footage


@pytest.mark.parametrize(
    ("error", "starts"),
    [
        (RuntimeError(f"lost {URL} mid-read"), "internal error while processing (RuntimeError: lost "),
        (ConfigError(f"cameras.0.source: {URL}: unknown camera"), "site config: cameras.0.source: "),
    ],
)
def test_a_failed_jobs_error_is_stored_masked(
    tmp_path: Path, sqlite_url: str, error: Exception, starts: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path)
        worker = Worker(
            services.factory, settings, pipeline=_failing_pipeline(error), config_loader=lambda: None
        )
        assert worker.run_once()
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert job is not None and job.status == "failed" and job.error is not None
            assert job.error.startswith(starts) and MASKED in job.error
            assert PASSWORD not in job.error and TOKEN not in job.error
    finally:
        services.close()

"""A killed worker's job folder (data/jobs/<job id>-<attempt>) does not stay for ever: it goes when the job is
retried or finished, and at worker start; a running attempt's folder is never touched."""

from __future__ import annotations

import time
from pathlib import Path

from api.jobs import queue
from api.jobs.worker import Worker
from api.services import Services
from tests.api.api_testkit import fake_pipeline, make_settings
from tests.api.test_uploads_jobs import _queue_upload, kill_midway


def _leave(folder: Path) -> Path:
    """A folder as a worker killed mid-job leaves it (its `finally` never ran)."""
    (folder / "evidence").mkdir(parents=True)
    (folder / "evidence" / "annotated-f000001.jpg").write_bytes(b"\xff\xd8")
    return folder


def test_a_retry_removes_the_killed_attempts_folder(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, job_lease_s=0.3, worker_poll_s=0.05)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path, "killed")
        kill_midway(services, settings)
        stale = _leave(settings.jobs_dir / f"{job_id}-1")
        time.sleep(0.4)
        healthy = Worker(services.factory, settings, pipeline=fake_pipeline(4), config_loader=lambda: None)
        assert healthy.run_once() is True
        assert not stale.exists()
        assert list(settings.jobs_dir.glob(f"{job_id}-*")) == []
    finally:
        services.close()


def test_worker_start_sweeps_stale_folders_but_keeps_a_running_attempts(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    services = Services.build(settings)
    try:
        running_job = _queue_upload(services, tmp_path, "running")
        queued_job = _queue_upload(services, tmp_path, "queued")
        with services.factory() as session:  # another worker runs the first job now (attempt 1)
            claim = queue.claim_next(session, owner="other-host:1", lease_s=600, max_attempts=3)
        assert claim is not None and (claim.job_id, claim.attempt) == (running_job, 1)
        jobs = settings.jobs_dir
        running = _leave(jobs / f"{running_job}-1")
        stale = [_leave(jobs / f"{running_job}-0"), _leave(jobs / f"{queued_job}-1"), _leave(jobs / "9999-2")]
        other = _leave(jobs / "notes")  # not an attempt folder: not ours to judge

        worker = Worker(services.factory, settings, pipeline=fake_pipeline(1), config_loader=lambda: None)
        assert worker.sweep_job_folders() == 3

        assert running.exists() and other.exists()
        assert not any(folder.exists() for folder in stale)
    finally:
        services.close()

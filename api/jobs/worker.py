"""The worker: claims jobs and runs their footage through the detection pipeline.

detect/ (and with it torch) is imported only inside `default_pipeline`, `default_config` and
`user_errors`, when the first job runs, so `gridpatrol serve` stays light until there is footage to
process. The pipeline is anything that satisfies `Pipeline` (detect.pipeline.detect_footage; tests
pass fakes). Each incident it yields is converted into api.cases.incident.IncidentPayload, the same
type POST /api/incidents receives, and ingested the same way.

Failures are sorted by name: footage, GPS track, site config and model errors are the user's and are
shown on the job as such; anything else is a bug, logged with its traceback and shown as an internal
error, never as "the footage could not be read".
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import Principal
from api.cases.chalking import ChalkPolicy
from api.cases.grids import GridCache
from api.cases.incident import IncidentConflict, IncidentPayload
from api.cases.ingest import IncidentIn, file_committed
from api.errors import is_disk_full
from api.jobs import queue
from api.jobs.superseding import supersede_earlier_runs
from api.jobs.track_fit import TrackFit, measure_track_fit, start_time_utc
from api.jobs.track_shape import write_track_shape
from api.jobs.uploads import CameraZone
from api.services import evidence_store, merge_policy
from api.settings import Settings
from api.storage.evidence_store import EvidenceError, StoredFile
from api.storage.models import Job, Upload

log = logging.getLogger(__name__)

# data/jobs/<job id>-<attempt>: one attempt's evidence files until they are filed
_ATTEMPT_FOLDER = re.compile(r"(\d+)-(\d+)")


class PipelineIncident(Protocol):
    """What the worker reads of an incident the pipeline yields (detect.values.Incident)."""

    @property
    def id(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class Pipeline(Protocol):
    """The detection pipeline as the worker calls it (detect.pipeline.detect_footage): footage in,
    incidents out as they are decided, evidence files written under out_dir, progress in [0, 1].
    `id_salt` is passed only for an upload a resend corrected (api.jobs.queue.upload_id_salt), so a
    pipeline without it still runs footage sent once."""

    def __call__(
        self,
        input: Path,
        config: Any,
        *,
        out_dir: Path,
        camera_id: str | None,
        start_time: datetime | None,
        source_id: str,
        progress: Callable[[float], None] | None,
        track: Path | None,
        id_salt: str = "",
    ) -> Iterator[PipelineIncident]: ...


class JobFailed(Exception):
    """A job that cannot finish; the message is what the job's error says."""


class LeaseLost(Exception):
    """Another worker took the job (our lease lapsed)."""


def default_pipeline() -> Pipeline:
    from detect.pipeline import ReusingPipeline

    return ReusingPipeline()


def default_config(settings: Settings) -> Any:
    from detect.config import load_config

    return load_config(settings.site_config)


def user_errors() -> tuple[type[Exception], type[Exception], type[Exception], type[Exception]]:
    """The named errors a user's input causes: (footage, GPS track, site config, model weights)."""
    from detect.config import ConfigError
    from detect.yolo import ModelError
    from streams import SourceError, TrackError

    return SourceError, TrackError, ConfigError, ModelError


def masked(error: str) -> str:
    """A job's error fit to store and log: every URL in it without its secrets (streams.mask_credentials).

    streams is loaded by the time a job fails (user_errors); where it cannot be loaded at all, nothing of
    it made the error, and the error is kept as it is rather than lost."""
    try:
        from streams import mask_credentials
    except ImportError:
        return error
    return mask_credentials(error)


def write_job_track_shape(
    track: Path,
    *,
    job_id: int,
    upload: Upload | None = None,
    factory: sessionmaker[Session] | None = None,
    grid_cache: GridCache | None = None,
    config: Any = None,
) -> str | None:
    """The track's thinned shape for the grid map (api.jobs.track_shape) and, given the upload and a
    session factory, the grid cells it passed (api.jobs.coverage; CSV times without an offset in the
    upload's camera's time zone), written when a job with a track is done (by this worker, or by a
    runner through api.http.routes.runner_jobs), before the job is finished; the job's cases are filed
    already, so what cannot be written is logged, never the job's failure. Returns the warning for the
    job when the grid has cells and the track passed none (api.jobs.coverage.off_grid_warning)."""
    from streams import TrackError

    try:
        write_track_shape(track)
    except (TrackError, OSError) as exc:
        log.warning("job %s: the shape of GPS track %s was not written: %s", job_id, track.name, exc)
    if upload is None or factory is None:
        return None
    from zoneinfo import ZoneInfo

    from api.jobs.coverage import record_coverage

    try:
        zone = camera_zone(config, upload.camera_id)
        with factory() as session:
            grid = (grid_cache or GridCache()).get(session)
            recorded = record_coverage(
                session,
                upload_id=upload.id,
                track=track,
                tz=ZoneInfo(zone),
                grid=grid,
                track_name=queue.track_name(upload),
            )
            session.commit()
    except Exception as exc:  # noqa: BLE001  (a report's input: logged, the job stays done)
        log.warning("job %s: the grid cells of GPS track %s were not recorded: %s", job_id, track.name, exc)
        return None
    return recorded.off_grid


def camera_zone(config: Any, camera_id: str | None) -> str:
    """The time zone of the upload's camera in the site config, the default's when it has none."""
    zone = "Asia/Shanghai"  # the site config's default camera time zone
    if config is not None:
        with contextlib.suppress(Exception):  # a camera the config does not know: the default
            zone = config.camera(camera_id).timezone
    return str(zone)


def config_camera_zone(settings: Settings, config_loader: Callable[[], Any] | None = None) -> CameraZone:
    """A camera's time zone by id from the site config (`config_loader`, default the settings' file),
    read when first asked; a LookupError saying why when the config or the camera is not there."""

    def zone(camera_id: str | None) -> tzinfo:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from detect.config import ConfigError

        try:
            config = (config_loader or (lambda: default_config(settings)))()
            return ZoneInfo(config.camera(camera_id).timezone)
        except (ConfigError, ZoneInfoNotFoundError, ValueError) as exc:
            raise LookupError(f"the site config gives no time zone for it ({exc})") from None

    return zone


def config_camera_zones(
    settings: Settings, config_loader: Callable[[], Any] | None = None
) -> tuple[dict[str, str], str | None]:
    """The site config's cameras' time zones (id -> IANA name) and the zone of its default camera (what a
    POST /api/uploads without a camera_id is read in), as config_camera_zone reads them; ({}, None) with a
    log line when the config cannot be read (the upload page then falls back to the site's offset)."""
    from detect.config import ConfigError

    try:
        config = (config_loader or (lambda: default_config(settings)))()
    except (ConfigError, OSError, ValueError) as exc:
        log.warning("the site config's camera time zones could not be read: %s", exc)
        return {}, None
    if config is None:  # no site config here (a service run without one)
        return {}, None
    zones = {str(c.id): str(c.timezone) for c in config.cameras}
    try:
        default: str | None = str(config.camera(None).timezone)
    except ConfigError:
        default = None  # several cameras and none the default: a camera_id is needed
    return zones, default


def job_track_fit(upload: Upload, config: Any, *, job_id: int) -> TrackFit | None:
    """How much of a done job's footage its upload's GPS track placed (api.jobs.track_fit); None (and
    a log line) when that cannot be measured: the job's incidents are filed already."""
    from zoneinfo import ZoneInfo

    from streams import SourceError, TrackError

    if upload.track_path is None:
        return None
    try:
        return measure_track_fit(
            track=Path(upload.track_path),
            footage=Path(upload.path),
            start_time=start_time_utc(upload.start_time),
            tz=ZoneInfo(camera_zone(config, upload.camera_id)),
            analysis_fps=getattr(config, "analysis_fps", None),
            track_name=queue.track_name(upload),
        )
    except (TrackError, SourceError, OSError) as exc:
        log.warning("job %s: how much of the footage its GPS track placed is not known: %s", job_id, exc)
        return None


def job_warning(
    fit: TrackFit | None, superseded: str | None, footage: str | None = None, off_grid: str | None = None
) -> str | None:
    """A done job's caveats in one: footage analysed only in part (the pipeline's notes, see
    detect.pipeline.footage_notes), how little of the footage its GPS track placed, a track that passed
    no grid cell (api.jobs.coverage.off_grid_warning), and the cases of the upload's earlier runs that
    keep their times (api.jobs.superseding)."""
    texts = (footage, fit.warning if fit else None, off_grid, superseded)
    parts = [text.rstrip(". ") for text in texts if text]
    return ". ".join(parts) or None


class Worker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        config_loader: Callable[[], Any] | None = None,
        grid_cache: GridCache | None = None,
        owner: str | None = None,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self._pipeline = pipeline
        self._config_loader = config_loader or (lambda: default_config(settings))
        self._config: Any = None
        self.grid_cache = grid_cache or GridCache()
        self.store = evidence_store(settings)
        self.policy = merge_policy(settings)
        self.chalk_policy = ChalkPolicy.of(settings)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._work = threading.Event()  # set by wake(): a job may be waiting
        self._thread: threading.Thread | None = None

    # --- running ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="gridpatrol-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """A job was just queued (an upload to this process): look now, not at the next poll."""
        self._work.set()

    def run_forever(self) -> None:
        log.info("worker %s started", self.owner)
        try:
            self.sweep_job_folders()
        except Exception:
            log.exception("sweeping stale job folders failed")
        self.warm()
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("worker round failed")
                worked = False
            if not worked:
                self._work.wait(self.settings.worker_poll_s)
                self._work.clear()

    def run_once(self) -> bool:
        """Claim and run one job; False when none was waiting."""
        with self.factory() as session:
            claim = queue.claim_next(
                session,
                owner=self.owner,
                lease_s=self.settings.job_lease_s,
                max_attempts=self.settings.job_max_attempts,
            )
        if claim is None:
            return False
        self.process(claim)
        return True

    # --- job folders ---

    def _attempt_folders(self) -> Iterator[tuple[Path, int, int]]:
        """(folder, job id, attempt) of every attempt folder under jobs_dir."""
        if not self.settings.jobs_dir.is_dir():
            return
        for folder in self.settings.jobs_dir.iterdir():
            match = _ATTEMPT_FOLDER.fullmatch(folder.name)
            if match and folder.is_dir():
                yield folder, int(match[1]), int(match[2])

    def _remove_earlier_attempts(self, job_id: int, attempt: int) -> None:
        """Remove the folders a job's earlier attempts left (a killed worker never removes its own): the
        queue gave the job a later attempt, so those are no longer running."""
        for folder, folder_job, folder_attempt in self._attempt_folders():
            if folder_job == job_id and folder_attempt < attempt:
                log.info("job %s: removing attempt %d's stale folder %s", job_id, folder_attempt, folder)
                shutil.rmtree(folder, ignore_errors=True)

    def sweep_job_folders(self) -> int:
        """At start: remove every attempt folder whose attempt is not running now (its job finished, was
        retried, or is gone); a running attempt's folder, this worker's or another's, is kept. The count
        removed."""
        folders = list(self._attempt_folders())
        if not folders:
            return 0
        with self.factory() as session:
            rows = session.execute(
                select(Job.id, Job.attempts).where(
                    Job.id.in_({job_id for _, job_id, _ in folders}), Job.status == queue.JobStatus.RUNNING
                )
            ).all()
        running = {(job_id, attempts) for job_id, attempts in rows}
        removed = 0
        for folder, job_id, attempt in folders:
            if (job_id, attempt) not in running:
                log.info("removing stale job folder %s", folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    # --- one job ---

    def process(self, claim: queue.Claim) -> None:
        out_dir = self.settings.jobs_dir / f"{claim.job_id}-{claim.attempt}"
        self._remove_earlier_attempts(claim.job_id, claim.attempt)
        progress = {"value": 0.0}
        lost = threading.Event()
        done = threading.Event()

        def beat() -> None:
            # progress shows within 2 s; the lease is renewed well before it lapses
            interval = max(0.05, min(2.0, self.settings.job_lease_s / 3))
            while not done.wait(interval):
                with self.factory() as session:
                    ok = queue.heartbeat(
                        session,
                        job_id=claim.job_id,
                        owner=self.owner,
                        lease_s=self.settings.job_lease_s,
                        progress=progress["value"],
                    )
                if not ok:
                    lost.set()
                    return

        heart = threading.Thread(target=beat, name=f"gridpatrol-job-{claim.job_id}-heartbeat", daemon=True)
        heart.start()
        error: str | None = None
        count = 0
        fit: TrackFit | None = None
        superseded: str | None = None
        notes: str | None = None
        off_grid: str | None = None
        try:
            count, fit, superseded, notes, off_grid = self._run(claim, out_dir, progress, lost)
        except LeaseLost:
            log.warning("job %s: lease lost to another worker; leaving it", claim.job_id)
            return
        except JobFailed as exc:
            error = masked(str(exc))
        except Exception as exc:
            full = next((e for e in (exc, exc.__cause__) if e is not None and is_disk_full(e)), None)
            if full is not None:  # not a bug: the server's disk, named (logged once below)
                where = getattr(full, "filename", None) or out_dir
                error = f"no space left on device writing {where}: free space, then send the footage again"
            else:
                log.exception("job %s failed", claim.job_id)
                error = masked(f"internal error while processing ({type(exc).__name__}: {exc})")[:2000]
        finally:
            done.set()
            heart.join()
            shutil.rmtree(out_dir, ignore_errors=True)
            self._remove_earlier_attempts(claim.job_id, claim.attempt)
        with self.factory() as session:
            queue.finish(
                session,
                job_id=claim.job_id,
                owner=self.owner,
                error=error,
                incidents=count,
                warning=job_warning(fit, superseded, notes, off_grid),
                track_covered=fit.share if fit else None,
                track_off_grid=off_grid is not None,
            )
        if error:
            log.warning("job %s failed: %s", claim.job_id, error)
        else:
            log.info("job %s done: %d incidents", claim.job_id, count)
            if fit is not None and fit.warning:
                log.warning("job %s: %s", claim.job_id, fit.warning)

    def warm(self) -> None:
        """Load the model before the first job (the default pipeline keeps it across jobs), so an
        upload is analysed from its first second; a config or model that cannot be loaded is left to
        fail the jobs with its reason."""
        if self._pipeline is not None:
            return
        started = time.monotonic()
        try:
            pipeline = self._pipeline_fn()
            warm = getattr(pipeline, "warm", None)
            if warm is not None:
                warm(self._site_config())
                log.info("worker %s: model loaded in %.1f s", self.owner, time.monotonic() - started)
        except Exception as exc:  # a bad config or model fails each job with its reason
            log.warning("worker %s: model not loaded ahead of the jobs: %s", self.owner, exc)

    def _pipeline_fn(self) -> Pipeline:
        if self._pipeline is None:
            try:
                self._pipeline = default_pipeline()
            except ImportError as exc:
                raise JobFailed(f"the detection pipeline is not available ({exc})") from None
        return self._pipeline

    def _site_config(self) -> Any:
        if self._config is None:
            _, _, config_error, _ = user_errors()
            try:
                self._config = self._config_loader()
            except config_error as exc:
                raise JobFailed(f"site config: {exc}") from None
        return self._config

    def _run(
        self, claim: queue.Claim, out_dir: Path, progress: dict[str, float], lost: threading.Event
    ) -> tuple[int, TrackFit | None, str | None, str | None, str | None]:
        """Run the job's footage through the pipeline: the incidents filed, how well its GPS track
        (if any) fits the footage, the warning naming the cases of the upload's earlier runs that
        an operator had reviewed before a resend corrected it (api.jobs.superseding), the
        pipeline's notes on the footage (detect.pipeline.footage_notes), and the warning of a track
        that passed no grid cell (api.jobs.coverage.off_grid_warning)."""
        with self.factory() as session:
            upload = session.get(Upload, claim.upload_id)
            if upload is None:
                raise JobFailed("the upload is gone")
            session.expunge(upload)
        footage = Path(upload.path)
        if not footage.is_file():
            raise JobFailed(f"footage file {footage.name} is missing from the uploads folder")
        pipeline = self._pipeline_fn()
        config = self._site_config()
        out_dir.mkdir(parents=True, exist_ok=True)

        def on_progress(fraction: float) -> None:
            if lost.is_set():
                raise LeaseLost()
            progress["value"] = float(fraction)

        actor = Principal(kind="worker", name=self.owner, role="system", device_id=upload.device_id)
        source_error, track_error, config_error, model_error = user_errors()
        count = 0
        notes = None
        salt = queue.upload_id_salt(upload.revision)
        try:
            incidents = pipeline(
                footage,
                config,
                out_dir=out_dir,
                camera_id=upload.camera_id,
                # stored as naive UTC; aware here so that detect reads it as UTC, not as camera-local time
                start_time=start_time_utc(upload.start_time),
                source_id=queue.upload_source_id(upload.sha256),
                progress=on_progress,
                track=Path(upload.track_path) if upload.track_path else None,
                **({"id_salt": salt} if salt else {}),
            )
            for incident in incidents:
                if lost.is_set():
                    raise LeaseLost()
                self._ingest(incident, out_dir, actor, upload, claim.job_id)
                count += 1
            from detect.pipeline import footage_notes

            notes = footage_notes(
                incidents,
                footage,
                upload.filename or footage.name,
                track=Path(upload.track_path) if upload.track_path else None,
                track_name=queue.track_name(upload),
            )
        except track_error as exc:
            name = queue.track_name(upload)
            raise JobFailed(f"GPS track '{name}' could not be read: {getattr(exc, 'detail', exc)}") from None
        except source_error as exc:
            reason = str(exc).replace(str(footage), upload.filename or footage.name)
            raise JobFailed(f"the footage could not be read: {reason}") from None
        except config_error as exc:
            raise JobFailed(f"site config: {exc}") from None
        except model_error as exc:
            raise JobFailed(f"the model could not be loaded: {exc}") from None
        fit = None
        off_grid = None
        if upload.track_path:
            fit = job_track_fit(upload, config, job_id=claim.job_id)
            off_grid = write_job_track_shape(
                Path(upload.track_path),
                job_id=claim.job_id,
                upload=upload,
                factory=self.factory,
                grid_cache=self.grid_cache,
                config=config,
            )
        if lost.is_set():
            raise LeaseLost()
        with self.factory() as session:
            superseded = supersede_earlier_runs(session, job_id=claim.job_id, actor=actor)
        return count, fit, superseded.warning, notes, off_grid

    def _ingest(
        self, incident: PipelineIncident, out_dir: Path, actor: Principal, upload: Upload, job_id: int
    ) -> None:
        """Convert the pipeline's incident into the payload POST /api/incidents receives, file its
        evidence and ingest it like any other (a suspected one is chalked, api.cases.chalking)."""
        try:
            payload = IncidentPayload.model_validate(incident.to_json())
        except ValidationError as exc:  # the pipeline broke the contract: a bug, not the user's footage
            raise RuntimeError(f"incident {incident.id} does not fit IncidentPayload: {exc}") from exc
        evidence: list[tuple[str, StoredFile]] = []
        for item in payload.evidence:
            path = (out_dir / item.path).resolve()
            if not path.is_relative_to(out_dir.resolve()) or not path.is_file():
                raise JobFailed(f"incident {payload.id}: evidence file {item.path} was not written")
            try:
                with path.open("rb") as fh:
                    stored = self.store.put_stream(fh, expected_sha256=item.sha256)
            except EvidenceError as exc:
                raise JobFailed(f"incident {payload.id}: evidence {item.path}: {exc.reason}") from None
            evidence.append((item.role, stored))
        inc = IncidentIn.from_payload(payload, evidence=evidence, camera_id=upload.camera_id)
        try:
            file_committed(
                self.factory,
                inc,
                grid_cache=self.grid_cache,
                policy=self.policy,
                chalk_policy=self.chalk_policy,
                actor=actor,
                job_id=job_id,
            )
        except IncidentConflict as exc:
            # an earlier attempt of this job filed the same id from the same footage, with other numbers
            # (another model, a detector not bit-for-bit repeatable): that first filing stands
            log.warning("job %s: %s; the first filing is kept", job_id, exc.reason)

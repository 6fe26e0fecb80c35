"""Upload jobs on a runner: footage uploaded to the case service analysed on the Ray cluster's machines
instead of (or beside) the service's in-process worker, over HTTP with the runner's key.

One loop (UploadJobLoop) does what api.jobs.worker.Worker does, through the case service's runner job
routes (api.http.routes.runner_jobs): claim the next job under a lease -> download its footage (and GPS
track) into a work folder, checked against the upload's SHA-256 -> run detect.pipeline.detect_footage
on it with the same arguments the in-process worker uses (camera, start time, source id, track), one
detector kept loaded across jobs -> post each incident with its evidence as it is decided ->
heartbeat the lease with the progress every couple of seconds -> finish (done with the incident count,
or failed with the reason a user can act on).

What happens when things go wrong:

  the footage, its track, the site config or the model     the job fails with the reason (as the
  cannot be read                                           in-process worker words it); the next job
  anything else in the analysis (a bug)                    logged with its traceback; the job fails
                                                           as an internal error
  a heartbeat or a post answers 409 (the lease lapsed      the attempt stops at once, unfinished: the
  and another worker claimed the job)                      job is another's now
  a post answers 409 naming the incident (an earlier       logged as a warning; the first filing
  attempt filed its id with other content)                 stands and the job goes on
  the case service unreachable beyond `patience_s`         the attempt stops, unfinished; its lease
  the runner or its actor killed                           lapses and whoever claims the job next
                                                           runs it again (up to the queue's attempts)

A retried attempt files no case twice: incident ids are deterministic (same footage, same source
id) and the service ingests each id once.

The Ray part is thin: UploadJobActor runs one loop in a thread of an actor process; start_upload_jobs
starts N of them on this machine (the runner's own node), restarted by Ray if their process dies.
Ray, detect and streams are imported only when a loop runs: importing this module is light.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx

from api.runner.forwarder import answer_detail, backoff_s, masked_url, retry_after_s

log = logging.getLogger(__name__)

JOBS_PATH = "/api/runner/jobs"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "site.yaml"
DEFAULT_WORK_ROOT = "~/.local/share/gridpatrol/runner-uploads"
DEFAULT_CPUS_PER_UPLOAD_JOB = 1.0  # Ray logical CPUs each upload loop holds: analysing footage is busy
LOCK_NAME = ".lock"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507})
DOWNLOAD_CHUNK = 1024 * 1024
_RNG = random.Random()


class JobFailed(Exception):
    """The job cannot be done; the message is the job's error as its sender reads it."""


class AttemptStopped(Exception):
    """This attempt ends unfinished: its lease is another's now, or the case service cannot be
    reached; the queue retries the job once the lease lapses."""


class PipelineIncident(Protocol):
    """What the loop reads of an incident the pipeline yields (detect.values.Incident)."""

    @property
    def id(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class Pipeline(Protocol):
    """The detection pipeline as the loop calls it (detect.pipeline.detect_footage's arguments, as
    api.jobs.worker.Pipeline): footage in, incidents out as decided, evidence files under out_dir."""

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


def _user_errors() -> tuple[type[Exception], type[Exception], type[Exception], type[Exception]]:
    """The named errors a user's input causes: (footage, GPS track, site config, model weights)."""
    from detect.config import ConfigError
    from detect.yolo import ModelError
    from streams import SourceError, TrackError

    return SourceError, TrackError, ConfigError, ModelError


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this runner holds (api.http.schemas.RunnerJob)."""

    id: int
    attempt: int
    lease: str
    lease_s: float
    upload: dict[str, Any]
    revision: int = 0  # the upload's revision this job runs for; the upload's own is upload["revision"]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimedJob:
        return cls(
            int(data["id"]),
            int(data["attempt"]),
            str(data["lease"]),
            float(data["lease_s"]),
            data["upload"],
            int(data.get("revision", 0)),
        )

    @property
    def upload_revision(self) -> int:
        return int(self.upload.get("revision", self.revision))

    def revision_note(self) -> str:
        """For the claim's log line: the revision this job runs for, and whether a corrected resend
        has superseded it (its upload is at a later revision)."""
        if self.revision < self.upload_revision:
            return f"revision {self.revision}, superseded: its upload is at revision {self.upload_revision}"
        return f"revision {self.revision}"

    @property
    def start_time(self) -> datetime | None:
        text = self.upload.get("start_time")
        return datetime.fromisoformat(text) if text else None  # "...Z": aware UTC, as the worker's


class JobClient:
    """The case service's runner job routes, with the runner's key. A call that cannot reach the
    service (or gets 429 / 5xx) is retried with backoff for up to `patience_s`, then AttemptStopped."""

    def __init__(
        self,
        server: str,
        key: str,
        *,
        timeout_s: float = 60.0,
        patience_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.where = masked_url(self.server)
        self.patience_s = patience_s
        self._client = httpx.Client(
            base_url=self.server,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers={"Authorization": f"Bearer {key}", "User-Agent": "gridpatrol-runner"},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """send() until it answers with anything but a transient failure, for up to patience_s."""
        deadline = time.monotonic() + self.patience_s
        streak = 0
        while True:
            retry_after = None
            try:
                response = send()
                if response.status_code not in RETRY_STATUSES:
                    return response
                reason = f"HTTP {response.status_code}: {answer_detail(response)}"
                retry_after = retry_after_s(response.headers.get("Retry-After"))
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            streak += 1
            pause = retry_after if retry_after is not None else backoff_s(streak, 0.5, 10.0, _RNG)
            if time.monotonic() + pause > deadline:
                raise AttemptStopped(
                    f"{what}: {self.where} did not answer ({reason}) for {self.patience_s:.0f} s"
                )
            log.warning("upload jobs: %s: %s; retrying in %.1f s", what, reason, pause)
            time.sleep(pause)

    def claim(self) -> ClaimedJob | None:
        response = self._call("claiming a job", lambda: self._client.post(f"{JOBS_PATH}/claim"))
        if response.status_code != 200:
            raise AttemptStopped(f"claiming a job: HTTP {response.status_code}: {answer_detail(response)}")
        job = response.json()["job"]
        return None if job is None else ClaimedJob.from_json(job)

    def _lease(self, job: ClaimedJob) -> dict[str, str]:
        return {"X-Job-Lease": job.lease}

    def download(self, job: ClaimedJob, what: str, target: Path, sha256: str | None) -> None:
        """GET the job's footage or track into `target`, streamed, checked against its SHA-256."""

        def fetch() -> httpx.Response:
            digest = hashlib.sha256()
            with self._client.stream(
                "GET", f"{JOBS_PATH}/{job.id}/{what}", headers=self._lease(job)
            ) as response:
                if response.status_code == 200:
                    with target.open("wb") as fh:
                        for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                            digest.update(chunk)
                            fh.write(chunk)
                else:
                    response.read()
            if response.status_code == 200 and sha256 and digest.hexdigest() != sha256:
                raise httpx.ReadError(f"the {what} arrived with SHA-256 {digest.hexdigest()[:12]}")
            return response

        response = self._call(f"job {job.id}: downloading its {what}", fetch)
        if response.status_code == 409:
            raise AttemptStopped(f"job {job.id}: {answer_detail(response)}")
        if response.status_code == 404:
            raise JobFailed(f"the {what} file is missing from the uploads folder")
        if response.status_code != 200:
            raise AttemptStopped(f"job {job.id}: downloading its {what}: HTTP {response.status_code}")

    def heartbeat(self, job: ClaimedJob, progress: float) -> bool:
        """Renew the lease; False when it is another's (409). A failed send counts as renewed: the
        next one tries again, and a lease that lapsed meanwhile answers 409 then."""
        try:
            response = self._client.post(
                f"{JOBS_PATH}/{job.id}/heartbeat", headers=self._lease(job), json={"progress": progress}
            )
        except httpx.TransportError as exc:
            log.warning("upload jobs: job %s: heartbeat not sent (%s)", job.id, type(exc).__name__)
            return True
        if response.status_code in (403, 409):
            return False
        if response.status_code != 200:
            log.warning("upload jobs: job %s: heartbeat answered HTTP %d", job.id, response.status_code)
        return True

    def post_incident(self, job: ClaimedJob, incident: dict[str, Any], files: list[Path]) -> bool:
        """POST one incident with its evidence files; True when it was a duplicate (already filed)."""

        def send() -> httpx.Response:
            with contextlib.ExitStack() as stack:
                parts: list[tuple[str, tuple[str | None, bytes | BinaryIO, str]]] = [
                    ("incident", (None, json.dumps(incident).encode(), "application/json"))
                ]
                for path in files:
                    parts.append(("files", (path.name, stack.enter_context(path.open("rb")), "image/jpeg")))
                return self._client.post(
                    f"{JOBS_PATH}/{job.id}/incidents", headers=self._lease(job), files=parts
                )

        response = self._call(f"job {job.id}: posting incident {incident['id']}", send)
        if response.status_code in (200, 201):
            return bool(response.json().get("duplicate"))
        if response.status_code == 409 and _is_incident_conflict(response):
            # an earlier attempt filed this id from the same footage with other numbers (another
            # model, a detector not bit-for-bit repeatable): that first filing stands
            log.warning("upload jobs: job %s: %s; the first filing is kept", job.id, answer_detail(response))
            return True
        if response.status_code in (403, 409):
            raise AttemptStopped(f"job {job.id}: {answer_detail(response)}")
        # the pipeline's incident does not fit what the service takes: a bug, not the user's footage
        raise RuntimeError(
            f"the case service refused incident {incident['id']} "
            f"(HTTP {response.status_code}: {answer_detail(response)})"
        )

    def finish(
        self, job: ClaimedJob, *, error: str | None, incidents: int, warning: str | None = None
    ) -> bool:
        """End the attempt (a done one with the pipeline's notes on the footage as `warning`); False
        when the lease was another's by then (the job is not ours to end)."""
        response = self._call(
            f"job {job.id}: finishing",
            lambda: self._client.post(
                f"{JOBS_PATH}/{job.id}/finish",
                headers=self._lease(job),
                json={"error": error, "incidents": incidents, "warning": warning},
            ),
        )
        if response.status_code == 200:
            return True
        if response.status_code in (403, 409):
            return False
        reason = f"HTTP {response.status_code}: {answer_detail(response)}"
        raise AttemptStopped(f"job {job.id}: finishing: {reason}")


def _is_incident_conflict(response: httpx.Response) -> bool:
    """A 409 refusing an incident id received before with other content (not a lapsed lease)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "changed" in body and "incident_id" in body


@dataclass
class LoopCounts:
    """What a loop did since it started (for the actor's status)."""

    done: int = 0
    failed: int = 0
    stopped: int = 0  # attempts left unfinished (lease lost, service unreachable)
    incidents: int = 0


class UploadJobLoop:
    """Claims upload jobs from the case service at `server` and runs them (see the module docstring).

    work_root: this loop takes a folder of its own under it (locked while the loop lives; folders of
    loops that died are removed at start). pipeline: detect_footage with a kept detector unless given
    (tests give one with a scripted detector). config_path: the site config (model, kinds, rules,
    cameras), the runner's own, as the service's worker uses the service's."""

    def __init__(
        self,
        server: str,
        key: str,
        *,
        work_root: str | os.PathLike[str] = DEFAULT_WORK_ROOT,
        config_path: str | os.PathLike[str] | None = None,
        pipeline: Pipeline | None = None,
        poll_s: float = 5.0,
        patience_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.client = JobClient(server, key, patience_s=patience_s, transport=transport)
        self.work_root = Path(work_root).expanduser()
        self.config_path = Path(config_path) if config_path else DEFAULT_CONFIG
        self.poll_s = poll_s
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.work_dir = self.work_root / self.name
        self.counts = LoopCounts()
        self.current: int | None = None  # the job being run
        self._pipeline = pipeline
        self._config: Any = None
        self._lock: Any = None

    # --- the work folder ---------------------------------------------------------------------------

    def open_work_dir(self) -> None:
        """Make and lock this loop's folder; remove the folders of loops no longer running."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._lock = (self.work_dir / LOCK_NAME).open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for folder in self.work_root.iterdir():
            if folder == self.work_dir or not folder.is_dir():
                continue
            with (folder / LOCK_NAME).open("a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live loop's
                log.info("upload jobs: removing the work folder %s of a loop that stopped", folder)
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.client.close()

    # --- running -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run jobs until `stop` is set (the attempt in progress is left to its lease)."""
        self.open_work_dir()
        log.info("upload jobs: loop %s polling %s", self.name, self.client.where)
        self.warm()
        try:
            while not stop.is_set():
                try:
                    worked = self.run_once(stop)
                except AttemptStopped as exc:
                    log.warning("upload jobs: %s", exc)
                    worked = False
                except Exception:
                    log.exception("upload jobs: a round failed")
                    worked = False
                if not worked:
                    stop.wait(self.poll_s)
        finally:
            self.close()

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claim and run one job; False when none was waiting."""
        job = self.client.claim()
        if job is None:
            return False
        self.process(job, stop)
        return True

    def warm(self) -> None:
        """Load the model before the first job; a config or model that cannot be loaded is left to
        fail the jobs with its reason."""
        if self._pipeline is not None:
            return
        started = time.monotonic()
        try:
            pipeline = self._pipeline_fn()
            warm = getattr(pipeline, "warm", None)
            if warm is not None:
                warm(self._site_config())
                log.info("upload jobs: model loaded in %.1f s", time.monotonic() - started)
        except Exception as exc:  # a bad config or model fails each job with its reason
            log.warning("upload jobs: model not loaded ahead of the jobs: %s", exc)

    def _pipeline_fn(self) -> Pipeline:
        if self._pipeline is None:
            try:
                from detect.pipeline import ReusingPipeline

                self._pipeline = ReusingPipeline()
            except ImportError as exc:
                raise JobFailed(f"the detection pipeline is not available ({exc})") from None
        return self._pipeline

    def _site_config(self) -> Any:
        if self._config is None:
            from detect.config import ConfigError, load_config

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise JobFailed(f"site config: {exc}") from None
        return self._config

    # --- one job -----------------------------------------------------------------------------------

    def process(self, job: ClaimedJob, stop: threading.Event | None = None) -> str:
        """Run one claimed job: "done", "failed" or "stopped" (left unfinished to its lease)."""
        log.info("upload jobs: job %s attempt %d claimed (%s)", job.id, job.attempt, job.revision_note())
        self.current = job.id
        folder = self.work_dir / f"{job.id}-{job.attempt}"
        folder.mkdir(parents=True, exist_ok=True)
        progress = {"value": 0.0}
        lost = threading.Event()  # the lease is another's: stop now
        done = threading.Event()

        def beat() -> None:
            interval = max(0.05, min(2.0, job.lease_s / 3))  # progress within 2 s; the lease kept
            while not done.wait(interval):
                if not self.client.heartbeat(job, progress["value"]):
                    lost.set()
                    return

        def check() -> None:
            if lost.is_set():
                raise AttemptStopped(f"job {job.id}: its lease went to another worker")
            if stop is not None and stop.is_set():
                raise AttemptStopped(f"job {job.id}: the loop is stopping")

        heart = threading.Thread(target=beat, name=f"gridpatrol-upload-job-{job.id}-heartbeat", daemon=True)
        heart.start()
        error: str | None = None
        count = 0
        notes: str | None = None
        try:
            count, notes = self._run(job, folder, progress, check)
        except AttemptStopped as exc:
            log.warning("upload jobs: attempt %d of job %s stopped unfinished: %s", job.attempt, job.id, exc)
            self.counts.stopped += 1
            return "stopped"
        except JobFailed as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("upload jobs: job %s failed", job.id)
            error = f"internal error while processing ({type(exc).__name__}: {exc})"[:2000]
        finally:
            done.set()
            heart.join()
            shutil.rmtree(folder, ignore_errors=True)
            self.current = None
        if lost.is_set() or not self.client.finish(job, error=error, incidents=count, warning=notes):
            log.warning("upload jobs: job %s: lease lost before it could be finished", job.id)
            self.counts.stopped += 1
            return "stopped"
        if error:
            log.warning("upload jobs: job %s failed: %s", job.id, error)
            self.counts.failed += 1
            return "failed"
        log.info("upload jobs: job %s done: %d incidents", job.id, count)
        self.counts.done += 1
        self.counts.incidents += count
        return "done"

    def _run(
        self, job: ClaimedJob, folder: Path, progress: dict[str, float], check: Callable[[], None]
    ) -> tuple[int, str | None]:
        """Run the job: the incidents posted, and the pipeline's notes on the footage (a file analysed
        only in part, detect.pipeline.footage_notes) named by the upload's file name."""
        upload = job.upload
        footage = folder / f"footage{upload.get('suffix') or ''}"
        self.client.download(job, "footage", footage, upload["sha256"])
        track = None
        if upload.get("has_track"):
            track = folder / f"track{upload.get('track_suffix') or ''}"
            self.client.download(job, "track", track, upload.get("track_sha256"))
        # the name the service gives the track (its file name as sent): the job's messages name it so
        track_name = upload.get("track_filename") or (track.name if track else "track")
        check()
        pipeline = self._pipeline_fn()
        config = self._site_config()
        out_dir = folder / "evidence"
        out_dir.mkdir()

        def on_progress(fraction: float) -> None:
            check()
            progress["value"] = float(fraction)

        source_error, track_error, config_error, model_error = _user_errors()
        count = 0
        try:
            incidents = pipeline(
                footage,
                config,
                out_dir=out_dir,
                camera_id=upload.get("camera_id"),
                start_time=job.start_time,
                source_id=upload["source_id"],
                progress=on_progress,
                track=track,
                # a corrected resend's ids (api.jobs.queue.upload_id_salt); passed only then, as the
                # in-process worker does
                **({"id_salt": upload["id_salt"]} if upload.get("id_salt") else {}),
            )
            for incident in incidents:
                check()
                self._post(job, incident, out_dir)
                count += 1
            from detect.pipeline import footage_notes

            notes = footage_notes(
                incidents, footage, upload.get("filename") or footage.name, track=track, track_name=track_name
            )
        except track_error as exc:
            raise JobFailed(
                f"GPS track '{track_name}' could not be read: {getattr(exc, 'detail', exc)}"
            ) from None
        except source_error as exc:
            reason = str(exc).replace(str(footage), upload.get("filename") or footage.name)
            raise JobFailed(f"the footage could not be read: {reason}") from None
        except config_error as exc:
            raise JobFailed(f"site config: {exc}") from None
        except model_error as exc:
            raise JobFailed(f"the model could not be loaded: {exc}") from None
        return count, notes[:2000] if notes else None

    def _post(self, job: ClaimedJob, incident: PipelineIncident, out_dir: Path) -> None:
        data = incident.to_json()
        files = []
        root = out_dir.resolve()
        for item in data.get("evidence") or []:
            path = (out_dir / item["path"]).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                raise JobFailed(f"incident {data['id']}: evidence file {item['path']} was not written")
            files.append(path)
        self.client.post_incident(job, data, files)


# --- Ray ---------------------------------------------------------------------------------------------


class UploadJobActor:
    """One UploadJobLoop in a thread of a Ray actor process (made a Ray actor by start_upload_jobs).
    Started again by Ray after its process died: the attempt it was running lapses and is retried."""

    def __init__(
        self,
        *,
        server: str,
        key: str,
        work_root: str,
        config_path: str | None,
        pipeline_factory: Callable[[], Pipeline] | None,
        poll_s: float,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per heartbeat otherwise
        self.loop = UploadJobLoop(
            server,
            key,
            work_root=work_root,
            config_path=config_path,
            pipeline=pipeline_factory() if pipeline_factory is not None else None,
            poll_s=poll_s,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.loop.run, args=(self._stop,), name="upload-jobs", daemon=True
        )
        self._thread.start()

    def status(self) -> dict[str, Any]:
        counts = self.loop.counts
        return {
            "pid": os.getpid(),
            "running": self._thread.is_alive(),
            "current_job": self.loop.current,
            "done": counts.done,
            "failed": counts.failed,
            "stopped": counts.stopped,
            "incidents": counts.incidents,
        }

    def stop(self, timeout_s: float) -> bool:
        """Stop claiming (the attempt in progress stops at its next frame, left to its lease); True
        when the loop has returned within timeout_s."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


_ACTORS: list[Any] = []  # the handles keep the actors alive as long as this process (their owner)


def start_upload_jobs(
    count: int,
    *,
    server: str,
    key: str,
    config_path: str | os.PathLike[str] | None = None,
    work_root: str = DEFAULT_WORK_ROOT,
    cpus_per_job: float = DEFAULT_CPUS_PER_UPLOAD_JOB,
    pipeline_factory: Callable[[], Pipeline] | None = None,
    poll_s: float = 5.0,
) -> list[Any]:
    """Start `count` upload job loops as Ray actors on this machine's node of the cluster this process
    is connected to (0: none). They belong to this process: they end when it ends (an attempt then in
    progress is retried after its lease lapses), and Ray starts one whose process died again."""
    if count <= 0:
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    actor_class = ray.remote(UploadJobActor)
    config = None if config_path is None else str(Path(config_path).resolve())
    handles = [
        actor_class.options(
            num_cpus=cpus_per_job,
            max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(
            server=server.rstrip("/"),
            key=key,
            work_root=work_root,
            config_path=config,
            pipeline_factory=pipeline_factory,
            poll_s=poll_s,
        )
        for _ in range(count)
    ]
    _ACTORS.extend(handles)
    log.info("upload jobs: %d loop(s) started on this node (%s)", count, masked_url(server))
    return handles

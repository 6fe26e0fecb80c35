"""The runner's engine: the case service's live cameras spread over the machines of a Ray cluster in
slots. A slot is one Ray actor (one process) that analyses up to `cameras_per_slot` cameras, each
camera's job (api.runner.camera.CameraJob: stream -> detector -> incidents -> spool -> forwarder) in
a thread of its own, all of them sharing the slot's one model (api.runner.camera.SharedDetector:
loaded on the first frame, one prediction at a time). A loaded model costs ~0.8 GiB in every process
that holds it and a camera's thread tens of MiB: sharing it is what lets a machine hold a dozen
cameras (an actor per camera held one model per camera).

One supervisor leads (CameraEngine; several `gridpatrol runner` on several machines elect one: the
leader holds the named actor `gridpatrol-supervisor`, which lives as long as the leader's process,
so another takes over when it exits or dies). Every `check_s` seconds the leader asks the slots what
they run and makes the cluster match the enabled cameras (GET /api/runner/cameras with the runner's
key, read every `poll_s` seconds):

  - a camera that runs nowhere goes to the answering slot with the fewest cameras that has room, or
    to a new slot (`gridpatrol-slot-<n>` in the `gridpatrol` namespace, detached, restarted by Ray
    when its process dies, SPREAD over the machines, holding `cpus_per_slot` logical CPUs);
  - each slot is given its whole camera list (`assign`): it stops the jobs of cameras it no longer
    has or whose definition changed (a hash of the registry's JSON), waits until they have returned,
    then starts the new ones; a job that did not stop within `stop_timeout_s` makes the slot's
    process exit (Ray starts it again empty), so a camera is never analysed twice at once;
  - a camera is placed only by the leader and only where it runs nowhere: a slot that does not
    answer keeps the cameras it had (its process is restarting, or its node is being declared dead)
    until it answers again, empty after a restart, and they are placed again; a new leader waits
    `settle_s` for silent slots before it places cameras nobody has reported;
  - slots left without cameras are stopped and their CPUs freed.

Failover times (Ray 2.60, measured on one 2-core machine, see the README): a slot process killed
with kill -9 is back, empty, in ~1 s and its cameras are placed at the next check (`check_s`, 2 s);
a node that stops answering is declared dead by the GCS after `health_check_failure_threshold`
failed checks `health_check_period_ms` apart, each failing at once (connection refused) or after
`health_check_timeout_ms` (no answer), and its slots start elsewhere. A local cluster started here
uses HEALTH_CHECK (period 2 s, timeout 2 s, threshold 5: dead after 8-10 s when refused, at most
~20 s when silent); a cluster started with `ray start --head` takes the same settings from
RAY_health_check_period_ms and friends in the head's environment.

A node cut off from the GCS but still running would keep analysing its cameras while they start
elsewhere; each slot fences itself against that: it asks the GCS every `fence_check_s` whether the
slot's name is still its own, and when it has had no yes for `fence_s` (or a no), it stops its jobs
and exits. fence_s + fence_check_s must stay under (threshold - 1) x period (7 s < 8 s with
HEALTH_CHECK).

Each camera's spool is <spool_root>/<camera id> on the machine that runs it (`~` is that machine's
home). Every runner (leader or not) sends the spools of its own machine that no job has open every
`sweep_s` (api.runner.backlog): a camera disabled, removed or moved while the service was away has
its backlog delivered all the same, and incidents spooled on a machine that died are sent when a
runner runs there again (or its spool is handed to another runner by hand).

Ray's head (its GCS) is a single point of failure: while it is down no slot is placed or restarted
and the slots fence themselves after `fence_s` (making it fault tolerant needs Ray's GCS fault
tolerance with an external Redis). Ray is imported only when an engine connects: importing this
module is light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from api.runner.backlog import SWEEP_S, SpoolSweeper
from api.runner.forwarder import answer_detail, masked_url

log = logging.getLogger(__name__)

NAMESPACE = "gridpatrol"
SLOT_PREFIX = "gridpatrol-slot-"
LEADER_NAME = "gridpatrol-supervisor"
CAMERAS_PATH = "/api/runner/cameras"
DEFAULT_SPOOL_ROOT = "~/.local/share/gridpatrol/runner-spool"
DEFAULT_CAMERAS_PER_SLOT = 8
DEFAULT_CPUS_PER_SLOT = 1.0  # Ray's logical CPUs a slot holds: a 2-core node takes 2 slots by default
# GCS health checks of the nodes of a local cluster started by the engine (Ray's defaults: 3000 ms,
# 10000 ms, 5, i.e. dead after 12-15 s when refused, up to 65 s when silent).
HEALTH_CHECK = {
    "health_check_initial_delay_ms": 2000,
    "health_check_period_ms": 2000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 5,
}
CRASH_PAUSE_S = 5.0  # a job that ended by itself is started again after this pause
SWEEP_JOIN_S = 15.0  # a sweep in progress when the engine stops: its spool's send, let go within this


class EngineError(Exception):
    """Something the engine cannot go on with (the key refused, the cluster unreachable), named."""


class CameraRunnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


class JobFactory(Protocol):
    """Makes the job of one camera (api.runner.camera.CameraJob's signature); picklable (a
    module-level class or function), as Ray sends it to the slot's machine. detector: the slot's
    shared model (api.runner.camera.SharedDetector)."""

    def __call__(
        self,
        camera: dict[str, Any],
        *,
        server: str,
        key: str,
        spool_dir: Path,
        config_path: Path | None,
        detector: Any,
    ) -> CameraRunnable: ...


def camera_job(
    camera: dict[str, Any],
    *,
    server: str,
    key: str,
    spool_dir: Path,
    config_path: Path | None,
    detector: Any,
) -> CameraRunnable:
    """The default job factory: the real camera job (imported on the slot's machine)."""
    from api.runner.camera import CameraJob

    return CameraJob(
        camera, server=server, key=key, spool_dir=spool_dir, config_path=config_path, detector=detector
    )


def slot_name(number: int) -> str:
    return f"{SLOT_PREFIX}{number}"


def definition_hash(camera: dict[str, Any]) -> str:
    """A hash of the camera as the registry gives it (any change of URL, zones, hours ... changes it)."""
    text = json.dumps(camera, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- a slot: one process, several cameras, one model ----------------------------------------------


class _Job:
    """One camera's job in its thread, inside a slot."""

    def __init__(self, camera_id: str, definition: str, job: CameraRunnable) -> None:
        self.camera_id = camera_id
        self.definition = definition
        self.stop = threading.Event()
        self.done = threading.Event()
        self.ended_at: float | None = None
        self.error: str | None = None
        self._job = job
        self.thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._job.run(self.stop)
        except Exception as exc:  # the job's own bug: logged, and the job started again after a pause
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: the job failed", self.camera_id)
        finally:
            self.ended_at = time.monotonic()
            self.done.set()
        if not self.stop.is_set():
            log.error("camera %s: the job ended by itself; it starts again shortly", self.camera_id)


class CameraSlot:
    """Up to the supervisor's cameras_per_slot cameras in threads of one Ray actor process, sharing
    one model (made a Ray actor class by _slot_class). Started again by Ray after its process died:
    __init__ runs again and the slot starts empty; the leader gives it cameras again."""

    def __init__(
        self,
        *,
        name: str,
        server: str,
        key: str,
        spool_root: str,
        config_path: str | None,
        job_factory: JobFactory,
        namespace: str,
        fence_s: float | None,
        fence_check_s: float,
    ) -> None:
        import ray

        from api.runner.camera import SharedDetector

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per state report otherwise
        self.name = name
        self._server = server
        self._key = key
        self._spool_root = Path(spool_root).expanduser()
        self._config_path = None if config_path is None else Path(config_path)
        self._job_factory = job_factory
        self._namespace = namespace  # the name's namespace (the context's is the creating job's)
        self._actor_id = ray.get_runtime_context().get_actor_id()
        self._detector = SharedDetector(self._config_path)
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stopping = False
        self._fence_s = fence_s
        self._fence_check_s = fence_check_s
        self._confirmed_at = time.monotonic()
        if fence_s is not None:
            threading.Thread(target=self._confirm_loop, name="slot-fence-check", daemon=True).start()
            threading.Thread(target=self._fence_loop, name="slot-fence", daemon=True).start()
        log.info("slot %s: started in pid %d", name, os.getpid())

    def assign(self, cameras: dict[str, dict[str, Any]], stop_timeout_s: float) -> dict[str, Any]:
        """Run exactly these cameras: stop the jobs of cameras not given or changed (all told at once,
        then waited for), then start the given ones not running; a job that ended by itself starts
        again CRASH_PAUSE_S after it ended. A job that does not stop within stop_timeout_s ends the
        process (a thread cannot be killed; Ray starts the slot again, empty)."""
        with self._lock:
            if self._stopping:
                return self.status()
            wanted = {camera_id: definition_hash(camera) for camera_id, camera in cameras.items()}
            leaving = [
                job
                for camera_id, job in self._jobs.items()
                if wanted.get(camera_id) != job.definition
                or (job.done.is_set() and time.monotonic() - (job.ended_at or 0.0) >= CRASH_PAUSE_S)
            ]
            for job in leaving:
                job.stop.set()
            deadline = time.monotonic() + stop_timeout_s
            for job in leaving:
                if not job.done.wait(max(0.0, deadline - time.monotonic())):
                    log.error(
                        "slot %s: camera %s did not stop in %.0f s; ending the process",
                        self.name,
                        job.camera_id,
                        stop_timeout_s,
                    )
                    os._exit(1)
                del self._jobs[job.camera_id]
                log.info("slot %s: camera %s stopped", self.name, job.camera_id)
            for camera_id, camera in sorted(cameras.items()):
                if camera_id in self._jobs:
                    continue
                runnable = self._job_factory(
                    camera,
                    server=self._server,
                    key=self._key,
                    spool_dir=self._spool_root / camera_id,
                    config_path=self._config_path,
                    detector=self._detector,
                )
                self._jobs[camera_id] = _Job(camera_id, wanted[camera_id], runnable)
                log.info("slot %s: camera %s started", self.name, camera_id)
            return self.status()

    def status(self) -> dict[str, Any]:
        import ray

        return {
            "slot": self.name,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "model_loaded": self._detector.loaded,
            "cameras": {
                camera_id: {
                    "definition": job.definition,
                    "running": not job.done.is_set(),
                    "error": job.error,
                }
                for camera_id, job in list(self._jobs.items())  # a copy: assign may be changing it
            },
        }

    def stop_all(self, timeout_s: float) -> bool:
        """Stop every job and take no more; True when all have returned within timeout_s."""
        with self._lock:
            self._stopping = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + timeout_s
        stopped = all(job.done.wait(max(0.0, deadline - time.monotonic())) for job in jobs)
        self._closed.set()
        return stopped

    def _confirm_loop(self) -> None:
        """Ask the GCS whether the slot's name is still ours (a blocking call: the other thread
        watches the time since the last yes)."""
        import ray

        while not self._closed.is_set():
            try:
                holder = ray.get_actor(self.name, namespace=self._namespace)
                mine = holder._actor_id.hex() == self._actor_id
            except ValueError:  # the name is free: we were killed, or the GCS forgot us
                mine = False
            except Exception as exc:  # the GCS unreachable: no yes this time
                log.warning("slot %s: cannot reach the cluster's GCS (%s)", self.name, exc)
                mine = None
            if mine:
                self._confirmed_at = time.monotonic()
            elif mine is False and not self._stopping:
                self._fence("another actor holds the slot, or none")
                return
            self._closed.wait(self._fence_check_s)

    def _fence_loop(self) -> None:
        assert self._fence_s is not None
        while not self._closed.wait(min(1.0, self._fence_check_s)):
            silent_s = time.monotonic() - self._confirmed_at
            if silent_s > self._fence_s and not self._stopping:
                self._fence(f"no word from the cluster's GCS for {silent_s:.0f} s")
                return

    def _fence(self, why: str) -> None:
        """Stop analysing (another machine may be starting these cameras) and exit the process."""
        log.error("slot %s: %s; stopping its cameras and exiting", self.name, why)
        self.stop_all(self._fence_s or 5.0)
        os._exit(1)


class _Leader:
    """The supervisors' lock: held by the supervisor that made it, and gone with its process."""

    def __init__(self, token: str) -> None:
        self.token = token

    def owner(self) -> str:
        return self.token


_CLASSES: dict[str, Any] = {}


def _slot_class() -> Any:
    if "slot" not in _CLASSES:
        import ray

        _CLASSES["slot"] = ray.remote(CameraSlot)
    return _CLASSES["slot"]


def _leader_class() -> Any:
    if "leader" not in _CLASSES:
        import ray

        _CLASSES["leader"] = ray.remote(_Leader)
    return _CLASSES["leader"]


# --- the supervisor -------------------------------------------------------------------------------


@dataclass
class Reconciled:
    """What one reconcile did (camera ids)."""

    started: list[str] = field(default_factory=list)  # placed in a slot this time
    replaced: list[str] = field(default_factory=list)  # the definition changed
    stopped: list[str] = field(default_factory=list)  # disabled or removed
    running: list[str] = field(default_factory=list)  # reported by a slot with the current definition
    pending: list[str] = field(default_factory=list)  # not placed (a silent slot has it, or no room)
    fetched: bool = True  # False: the camera list could not be read, nothing was changed
    leading: bool = True  # False: another supervisor leads, nothing was done


class CameraEngine:
    """Keeps the enabled cameras of the case service at `server` running in slots of a Ray cluster.

    ray_address: the cluster (None: use the Ray this process is connected to, or start a local one
    with `num_cpus` CPUs and HEALTH_CHECK). job_factory: what each camera runs (tests give a light
    one). cameras_per_slot: cameras sharing one process and one model. cpus_per_slot: Ray's logical
    CPUs held by each slot (for placement; not a limit on what it uses)."""

    def __init__(
        self,
        server: str,
        key: str,
        *,
        ray_address: str | None = None,
        spool_root: str | os.PathLike[str] = DEFAULT_SPOOL_ROOT,
        poll_s: float = 10.0,
        check_s: float = 2.0,
        config_path: str | os.PathLike[str] | None = None,
        job_factory: JobFactory = camera_job,
        cameras_per_slot: int = DEFAULT_CAMERAS_PER_SLOT,
        cpus_per_slot: float = DEFAULT_CPUS_PER_SLOT,
        num_cpus: int | None = None,
        namespace: str = NAMESPACE,
        stop_timeout_s: float = 30.0,
        call_timeout_s: float = 10.0,
        status_timeout_s: float = 3.0,
        settle_s: float = 15.0,
        fence_s: float | None = 6.0,
        fence_check_s: float = 1.0,
        log_to_driver: bool = True,
        transport: httpx.BaseTransport | None = None,
        sweep_s: float | None = SWEEP_S,
    ) -> None:
        if poll_s <= 0 or check_s <= 0 or cpus_per_slot <= 0 or cameras_per_slot < 1:
            raise ValueError("poll_s, check_s, cpus_per_slot and cameras_per_slot must be positive")
        self.server = server.rstrip("/")
        self.where = masked_url(self.server)
        self._key = key
        self.ray_address = ray_address
        root = str(spool_root)  # `~` is expanded on each slot's machine; a relative path here
        self.spool_root = root if root.startswith("~") else str(Path(root).resolve())
        self.poll_s = poll_s
        self.check_s = check_s
        self.config_path = None if config_path is None else str(Path(config_path).resolve())
        self.job_factory = job_factory
        self.cameras_per_slot = cameras_per_slot
        self.cpus_per_slot = cpus_per_slot
        self.num_cpus = num_cpus
        self.namespace = namespace
        self.stop_timeout_s = stop_timeout_s
        self.call_timeout_s = call_timeout_s
        self.status_timeout_s = status_timeout_s
        self.settle_s = settle_s
        self.fence_s = fence_s
        self.fence_check_s = fence_check_s
        self.log_to_driver = log_to_driver
        self._transport = transport
        self.sweep_s = sweep_s  # how often this machine's spools no job holds are sent (None: never)
        self._token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leader: Any = None
        self._leading_since: float | None = None
        self._placed: dict[str, str] = {}  # camera -> slot it was given to, while that slot is silent
        self._cameras: dict[str, dict[str, Any]] | None = None
        self._fetched_at = -float("inf")
        self._started_ray = False
        self._connected = False
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    # --- the cluster --------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster (or start a local one); the driver joins our namespace."""
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            self._connected = True
            return
        started = time.monotonic()
        try:
            if self.ray_address:
                ray.init(address=self.ray_address, namespace=self.namespace, log_to_driver=self.log_to_driver)
            else:
                ray.init(
                    address="local",  # a new cluster, not one a `ray start` here left behind
                    num_cpus=self.num_cpus,
                    namespace=self.namespace,
                    include_dashboard=False,
                    log_to_driver=self.log_to_driver,
                    _system_config=HEALTH_CHECK,
                )
                self._started_ray = True
        except (ConnectionError, RuntimeError) as exc:
            raise EngineError(
                f"cannot connect to the Ray cluster {self.ray_address or '(local)'}: {exc}"
            ) from exc
        self._connected = True
        context = ray.get_runtime_context()
        log.info(
            "engine: %s Ray cluster %s in %.1f s (node %s)",
            "started a local" if self._started_ray else "joined the",
            context.gcs_address,
            time.monotonic() - started,
            context.get_node_id(),
        )

    def lead(self) -> bool:
        """Whether this supervisor leads (taking the lead when nobody holds it)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            handle = (
                _leader_class()
                .options(name=LEADER_NAME, namespace=self.namespace, get_if_exists=True, num_cpus=0)
                .remote(self._token)
            )
            owner = ray.get(handle.owner.remote(), timeout=self.call_timeout_s)
        except (GetTimeoutError, RayActorError) as exc:  # the leader is going away: ask again later
            log.info("engine: the supervisors' lock is changing hands (%s)", type(exc).__name__)
            owner = None
        leading = owner == self._token
        if leading and self._leading_since is None:
            self._leader, self._leading_since = handle, time.monotonic()
            log.info("engine: this supervisor leads (%s)", self._token)
        elif not leading and self._leading_since is not None:
            log.warning("engine: this supervisor no longer leads")
            self._leader = self._leading_since = None
            self._placed.clear()
        return leading

    # --- the cameras --------------------------------------------------------------------------

    def fetch_cameras(self) -> dict[str, dict[str, Any]] | None:
        """The enabled cameras by id; None when the case service cannot be reached (nothing is
        changed then). A refused key is an EngineError."""
        try:
            with httpx.Client(
                timeout=self.call_timeout_s,
                headers={"Authorization": f"Bearer {self._key}", "User-Agent": "gridpatrol-runner"},
                transport=self._transport,
            ) as client:
                response = client.get(self.server + CAMERAS_PATH)
        except httpx.HTTPError as exc:
            log.warning("engine: cannot read the cameras from %s: %s", self.where, type(exc).__name__)
            return None
        if response.status_code in (401, 403):
            raise EngineError(
                f"{self.where} refused the runner key ({response.status_code}): "
                "make one with `gridpatrol device add NAME --runner`"
            )
        if response.status_code != 200:
            log.warning("engine: %s answered %d to %s", self.where, response.status_code, CAMERAS_PATH)
            return None
        try:
            return {str(camera["id"]): camera for camera in response.json()}
        except (ValueError, TypeError, KeyError):  # another server, or a proxy's page, at the URL
            log.warning(
                "engine: %s answered %s with no camera list (is the server URL right?): %s",
                self.where,
                CAMERAS_PATH,
                answer_detail(response),
            )
            return None

    def slots(self) -> dict[str, Any]:
        """The slots alive (or restarting) in the cluster now, by name."""
        import ray

        found = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == self.namespace and entry["name"].startswith(SLOT_PREFIX):
                found[entry["name"]] = ray.get_actor(entry["name"], namespace=self.namespace)
        return found

    def statuses(self, slots: dict[str, Any] | None = None) -> dict[str, dict[str, Any] | None]:
        """Each slot's status (None: it did not answer within status_timeout_s)."""
        import ray
        from ray.exceptions import RayActorError

        slots = self.slots() if slots is None else slots
        asked = {handle.status.remote(): name for name, handle in slots.items()}
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(slots)
        if not asked:
            return found
        ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=self.status_timeout_s)
        for ref in ready:
            with contextlib.suppress(RayActorError):  # died meanwhile: silent this time
                found[asked[ref]] = ray.get(ref)
        return found

    def placement(self) -> dict[str, str]:
        """camera id -> the slot running it, from the slots that answer."""
        return {
            camera_id: name
            for name, status in sorted(self.statuses().items())
            if status is not None
            for camera_id in status["cameras"]
        }

    def _new_slot(self, taken: set[str]) -> tuple[str, Any] | None:
        """A new slot with the lowest free number, once it answers; None when it did not answer
        within call_timeout_s (no room in the cluster yet: it is placed when room comes)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        number = 0
        while slot_name(number) in taken:
            number += 1
        name = slot_name(number)
        handle = (
            _slot_class()
            .options(
                name=name,
                namespace=self.namespace,
                get_if_exists=True,
                lifetime="detached",
                max_restarts=-1,
                max_task_retries=0,  # a call to a restarted slot fails: the leader asks again
                max_concurrency=4,  # status answers while assign waits for jobs to stop
                num_cpus=self.cpus_per_slot,
                scheduling_strategy="SPREAD",
            )
            .remote(
                name=name,
                server=self.server,
                key=self._key,
                spool_root=self.spool_root,
                config_path=self.config_path,
                job_factory=self.job_factory,
                namespace=self.namespace,
                fence_s=self.fence_s,
                fence_check_s=self.fence_check_s,
            )
        )
        try:
            ray.get(handle.status.remote(), timeout=self.call_timeout_s)
        except (GetTimeoutError, RayActorError):
            log.warning("engine: the new slot %s does not answer yet (no room in the cluster?)", name)
            return None
        log.info("engine: slot %s started", name)
        return name, handle

    def stop_slot(self, name: str, handle: Any) -> None:
        """Stop a slot's jobs (waiting up to stop_timeout_s), kill its actor and wait until its name
        is free."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            returned = ray.get(handle.stop_all.remote(self.stop_timeout_s), timeout=self.stop_timeout_s + 5)
            if not returned:
                log.warning("slot %s: its jobs did not stop in %.0f s; killing it", name, self.stop_timeout_s)
        except (GetTimeoutError, RayActorError):
            log.warning("slot %s: did not answer the stop; killing it", name)
        ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + self.call_timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                return
            time.sleep(0.1)
        log.warning("slot %s: its name is still held %.0f s after the kill", name, self.call_timeout_s)

    def reconcile(self, cameras: dict[str, dict[str, Any]] | None = None) -> Reconciled:
        """One pass: make the slots match the enabled cameras (see the module docstring). cameras:
        the registry's enabled cameras (read from the case service when None)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        done = Reconciled()
        if not self.lead():
            done.leading = False
            return done
        wanted = self.fetch_cameras() if cameras is None else cameras
        if wanted is None:
            done.fetched = False
            return done
        handles = self.slots()
        statuses = self.statuses(handles)
        answering = {name: status for name, status in statuses.items() if status is not None}
        silent = sorted(set(statuses) - set(answering))
        running: dict[str, list[str]] = {}
        for name, status in sorted(answering.items()):
            for camera_id in status["cameras"]:
                running.setdefault(camera_id, []).append(name)
        # what was given to a silent slot stays there until it answers (with it, or empty)
        self._placed = {c: s for c, s in self._placed.items() if s in silent}
        target: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in answering}
        for camera_id, names in running.items():
            if len(names) > 1:  # never made by one leader; stopped in all slots but one
                log.error("camera %s: running in %s; keeping it in %s only", camera_id, names, names[0])
            if camera_id in wanted:
                target[names[0]][camera_id] = wanted[camera_id]
                current = answering[names[0]]["cameras"][camera_id]["definition"]
                if current != definition_hash(wanted[camera_id]):
                    done.replaced.append(camera_id)
                else:
                    done.running.append(camera_id)
            else:
                done.stopped.append(camera_id)
        settled = self._leading_since is not None and time.monotonic() - self._leading_since >= self.settle_s
        for camera_id in sorted(set(wanted) - set(running)):
            if camera_id in self._placed or (silent and not settled):
                done.pending.append(camera_id)  # a silent slot may have it
                continue
            roomy = [name for name in target if len(target[name]) < self.cameras_per_slot]
            if not roomy:
                made = None if silent else self._new_slot(set(statuses))
                if made is None:
                    done.pending.append(camera_id)
                    continue
                name, handle = made
                handles[name], target[name] = handle, {}
                statuses[name] = None  # taken (the next new slot gets another number)
                roomy = [name]
            name = min(roomy, key=lambda n: (len(target[n]), n))
            target[name][camera_id] = wanted[camera_id]
            done.started.append(camera_id)
        for name, cameras_given in sorted(target.items()):
            reported = answering.get(name)
            have = {} if reported is None else reported["cameras"]
            same = set(have) == set(cameras_given) and all(
                have[c]["running"] and have[c]["definition"] == definition_hash(cameras_given[c])
                for c in cameras_given
            )
            if same:
                continue
            if not cameras_given:
                log.info("engine: slot %s has no cameras left; stopping it", name)
                self.stop_slot(name, handles[name])
                continue
            try:
                ray.get(
                    handles[name].assign.remote(cameras_given, self.stop_timeout_s),
                    timeout=self.stop_timeout_s + self.call_timeout_s,
                )
            except (GetTimeoutError, RayActorError) as exc:
                log.warning("engine: slot %s did not take its cameras (%s)", name, type(exc).__name__)
            for camera_id in cameras_given:
                self._placed.setdefault(camera_id, name)  # until the slot reports it
        if done.started or done.replaced or done.stopped:
            log.info(
                "engine: %d cameras in %d slots; started %s, replaced %s, stopped %s, pending %s",
                len(wanted) - len(done.pending),
                len([t for t in target.values() if t]),
                done.started,
                done.replaced,
                done.stopped,
                done.pending,
            )
        elif done.pending:
            log.info("engine: cameras not placed yet: %s", done.pending)
        return done

    # --- running ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Reconcile every check_s (the camera list read every poll_s) until `stop` is set
        (connecting first)."""
        if not self._connected:
            self.connect()
        sweeper: threading.Thread | None = None
        if self.sweep_s is not None:  # every runner's, leader or not: the spools of its own machine
            sweeping = SpoolSweeper(self.spool_root, server=self.server, key=self._key, every_s=self.sweep_s)
            sweeper = threading.Thread(
                target=sweeping.run, args=(stop,), name="gridpatrol-spool-sweeper", daemon=True
            )
            sweeper.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                if self._cameras is None or started - self._fetched_at >= self.poll_s:
                    fetched = self.fetch_cameras()
                    if fetched is not None:
                        self._cameras, self._fetched_at = fetched, started
                if self._cameras is not None:
                    self.reconcile(self._cameras)
                stop.wait(max(0.0, self.check_s - (time.monotonic() - started)))
        finally:
            if sweeper is not None:
                sweeper.join(SWEEP_JOIN_S)

    def start(self) -> None:
        """run() in a thread (for a process that hosts the engine beside other work)."""
        self.connect()
        self._halt.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._halt,), name="gridpatrol-engine", daemon=True
        )
        self._thread.start()

    def close(self, *, stop_cameras: bool = False) -> None:
        """Stop supervising and give up the lead. stop_cameras: also stop every slot in the cluster
        (they are detached: otherwise they go on, watched by the next leader). A local cluster this
        engine started is shut down, and its slots with it."""
        import ray

        self._halt.set()
        if self._thread is not None:
            self._thread.join(self.poll_s + self.call_timeout_s + self.stop_timeout_s)
            self._thread = None
        if not self._connected:
            return
        if stop_cameras or self._started_ray:
            slots = self.slots()
            log.info("engine: stopping the %d slots", len(slots))
            for name, handle in slots.items():
                self.stop_slot(name, handle)
        if self._leader is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._leader, no_restart=True)
            self._leader = self._leading_since = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._connected = False

"""The runner's engine: the case service's live cameras spread over the machines of a Ray cluster, one
Ray actor per camera, each running one camera job (api.runner.camera.CameraJob: stream -> detector ->
incidents -> spool -> forwarder) in a thread until it is told to stop.

A supervisor (CameraEngine) reads the enabled cameras from the case service (GET /api/runner/cameras
with the runner's key) every `poll_s` seconds and makes the cluster match:

  - a camera with no actor gets one, named `gridpatrol-camera-<id>` in the `gridpatrol` namespace and
    created with get_if_exists: a name is held by one live actor in the whole cluster, so two
    supervisors (two `gridpatrol runner` on two machines) never make two actors for one camera;
  - an actor whose camera was disabled or removed is stopped: its job is told to stop and given
    `stop_timeout_s` to return (the spool is on disk, nothing is lost), then the actor is killed and
    its name is free again;
  - an actor whose camera definition changed (a hash of the registry's JSON) is stopped the same way
    and made again with the new definition: the old job has returned, or its process is dead, before
    the new one starts, so a camera is never analysed twice at once;
  - the cameras' actors are detached with max_restarts=-1: a supervisor that exits leaves them
    running, and Ray starts an actor whose process died (kill -9, a crash, its node lost) again, on
    this node or another, with the same definition (its __init__ runs again and restarts the job).

Failover times (Ray 2.60, measured on one 2-core machine, see the README): a killed actor process
answers again after ~1 s; a node that stops answering is declared dead by the GCS after
`health_check_failure_threshold` failed checks `health_check_period_ms` apart, each failing at once
(connection refused) or after `health_check_timeout_ms` (no answer), and its actors start elsewhere.
A local cluster started here uses HEALTH_CHECK (period 2 s, timeout 2 s, threshold 5: dead after
8-10 s when refused, at most ~20 s when silent); a cluster started with `ray start --head` takes
the same settings from RAY_health_check_period_ms and friends in the head's environment.

A node cut off from the GCS but still running would keep analysing its cameras while they start
elsewhere; each actor fences itself against that: it asks the GCS every `fence_check_s` whether the
camera's name is still its own, and when it has had no yes for `fence_s` (or a no), it stops its job
and exits. fence_s + fence_check_s must stay under (threshold - 1) x period (7 s < 8 s with HEALTH_CHECK).

Each actor's spool is <spool_root>/<camera id> on the machine it runs on (`~` is that machine's home),
so incidents spooled on a machine that died are sent when that machine runs the camera again or
its spool is handed to another runner by hand.

Ray is imported only when an engine connects: importing this module is light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from api.runner.forwarder import masked_url

log = logging.getLogger(__name__)

NAMESPACE = "gridpatrol"
ACTOR_PREFIX = "gridpatrol-camera-"
CAMERAS_PATH = "/api/runner/cameras"
DEFAULT_SPOOL_ROOT = "~/.local/share/gridpatrol/runner-spool"
DEFAULT_CPUS_PER_CAMERA = 0.125  # Ray's logical CPUs: 16 cameras on a 2-core node
# GCS health checks of the nodes of a local cluster started by the engine (Ray's defaults: 3000 ms,
# 10000 ms, 5, i.e. dead after 12-15 s when refused, up to 65 s when silent).
HEALTH_CHECK = {
    "health_check_initial_delay_ms": 2000,
    "health_check_period_ms": 2000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 5,
}
CRASH_PAUSE_S = 5.0  # a job that ended by itself: pause before the actor exits to be restarted


class EngineError(Exception):
    """Something the engine cannot go on with (the key refused, the cluster unreachable), named."""


class CameraRunnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


class JobFactory(Protocol):
    """Makes the job of one camera (api.runner.camera.CameraJob's signature); picklable (a
    module-level class or function), as Ray sends it to the actor's machine."""

    def __call__(
        self,
        camera: dict[str, Any],
        *,
        server: str,
        key: str,
        spool_dir: Path,
        config_path: Path | None,
    ) -> CameraRunnable: ...


def camera_job(
    camera: dict[str, Any], *, server: str, key: str, spool_dir: Path, config_path: Path | None
) -> CameraRunnable:
    """The default job factory: the real camera job (imported on the actor's machine)."""
    from api.runner.camera import CameraJob

    return CameraJob(camera, server=server, key=key, spool_dir=spool_dir, config_path=config_path)


def actor_name(camera_id: str) -> str:
    return f"{ACTOR_PREFIX}{camera_id}"


def definition_hash(camera: dict[str, Any]) -> str:
    """A hash of the camera as the registry gives it (any change of URL, zones, hours ... changes it)."""
    text = json.dumps(camera, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- the actor ------------------------------------------------------------------------------------


class CameraActor:
    """One camera's job in a thread of a Ray actor process (made a Ray actor class by _actor_class).

    Started again by Ray after its process died: __init__ runs again and so does the job. A job that
    ends by itself (it should not: it retries its stream) makes the process exit after CRASH_PAUSE_S so
    that Ray starts it afresh."""

    def __init__(
        self,
        camera: dict[str, Any],
        *,
        server: str,
        key: str,
        spool_root: str,
        config_path: str | None,
        job_factory: JobFactory,
        definition: str,
        namespace: str,
        fence_s: float | None,
        fence_check_s: float,
    ) -> None:
        import ray

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per state report otherwise
        self.camera_id = str(camera["id"])
        self.definition = definition
        self._name = actor_name(self.camera_id)
        self._namespace = namespace  # the name's namespace (the context's is the creating job's)
        self._actor_id = ray.get_runtime_context().get_actor_id()
        self._stop = threading.Event()
        self._stopping = False
        self._done = threading.Event()
        self._error: str | None = None
        self._fence_s = fence_s
        self._fence_check_s = fence_check_s
        self._confirmed_at = time.monotonic()
        spool_dir = Path(spool_root).expanduser() / self.camera_id
        self._job = job_factory(
            camera,
            server=server,
            key=key,
            spool_dir=spool_dir,
            config_path=None if config_path is None else Path(config_path),
        )
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()
        if fence_s is not None:
            threading.Thread(target=self._confirm_loop, name="camera-fence-check", daemon=True).start()
            threading.Thread(target=self._fence_loop, name="camera-fence", daemon=True).start()
        log.info("camera %s: job started in pid %d", self.camera_id, os.getpid())

    def _run(self) -> None:
        try:
            self._job.run(self._stop)
        except Exception as exc:  # the job's own bug: logged, and the actor restarted below
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: the job failed", self.camera_id)
        finally:
            self._done.set()
        if not self._stopping:
            log.error("camera %s: the job ended by itself; restarting the actor", self.camera_id)
            if not self._stop.wait(CRASH_PAUSE_S):
                os._exit(1)

    def _confirm_loop(self) -> None:
        """Ask the GCS whether our camera's name is still ours (a blocking call: the other thread
        watches the time since the last yes)."""
        import ray

        while not self._done.is_set():
            try:
                holder = ray.get_actor(self._name, namespace=self._namespace)
                mine = holder._actor_id.hex() == self._actor_id
            except ValueError:  # the name is free: we were killed, or the GCS forgot us
                mine = False
            except Exception as exc:  # the GCS unreachable: no yes this time
                log.warning("camera %s: cannot reach the cluster's GCS (%s)", self.camera_id, exc)
                mine = None
            if mine:
                self._confirmed_at = time.monotonic()
            elif mine is False and not self._stopping:
                self._fence("another actor holds the camera, or none")
                return
            self._done.wait(self._fence_check_s)

    def _fence_loop(self) -> None:
        assert self._fence_s is not None
        while not self._done.wait(min(1.0, self._fence_check_s)):
            silent_s = time.monotonic() - self._confirmed_at
            if silent_s > self._fence_s and not self._stopping:
                self._fence(f"no word from the cluster's GCS for {silent_s:.0f} s")
                return

    def _fence(self, why: str) -> None:
        """Stop analysing (another machine may be starting this camera) and exit the process."""
        log.error("camera %s: %s; stopping the job and exiting", self.camera_id, why)
        self._stop.set()
        self._done.wait(self._fence_s)
        os._exit(1)

    def status(self) -> dict[str, Any]:
        import ray

        return {
            "camera_id": self.camera_id,
            "definition": self.definition,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "running": not self._done.is_set(),
            "error": self._error,
        }

    def stop(self, timeout_s: float) -> bool:
        """Tell the job to stop and wait up to timeout_s for it to return; True when it has."""
        self._stopping = True
        self._stop.set()
        return self._done.wait(timeout_s)


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(CameraActor)
    return _ACTOR_CLASS


# --- the supervisor -------------------------------------------------------------------------------


@dataclass
class Reconciled:
    """What one reconcile did (camera ids)."""

    started: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # the definition changed
    stopped: list[str] = field(default_factory=list)  # disabled or removed
    running: list[str] = field(default_factory=list)  # answering with the current definition
    pending: list[str] = field(default_factory=list)  # not answering yet (starting, restarting, no room)
    fetched: bool = True  # False: the camera list could not be read, nothing was changed


class CameraEngine:
    """Keeps one actor per enabled camera of the case service at `server` in a Ray cluster.

    ray_address: the cluster (None: use the Ray this process is connected to, or start a local one
    with `num_cpus` CPUs and HEALTH_CHECK). job_factory: what each actor runs (tests give a light
    one). cpus_per_camera: Ray's logical CPUs held by each actor (not a limit on what it uses)."""

    def __init__(
        self,
        server: str,
        key: str,
        *,
        ray_address: str | None = None,
        spool_root: str | os.PathLike[str] = DEFAULT_SPOOL_ROOT,
        poll_s: float = 10.0,
        config_path: str | os.PathLike[str] | None = None,
        job_factory: JobFactory = camera_job,
        cpus_per_camera: float = DEFAULT_CPUS_PER_CAMERA,
        num_cpus: int | None = None,
        namespace: str = NAMESPACE,
        stop_timeout_s: float = 30.0,
        call_timeout_s: float = 10.0,
        fence_s: float | None = 6.0,
        fence_check_s: float = 1.0,
        log_to_driver: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if poll_s <= 0 or cpus_per_camera <= 0:
            raise ValueError("poll_s and cpus_per_camera must be positive")
        self.server = server.rstrip("/")
        self.where = masked_url(self.server)
        self._key = key
        self.ray_address = ray_address
        root = str(spool_root)  # `~` is expanded on each actor's machine; a relative path here
        self.spool_root = root if root.startswith("~") else str(Path(root).resolve())
        self.poll_s = poll_s
        self.config_path = None if config_path is None else str(Path(config_path).resolve())
        self.job_factory = job_factory
        self.cpus_per_camera = cpus_per_camera
        self.num_cpus = num_cpus
        self.namespace = namespace
        self.stop_timeout_s = stop_timeout_s
        self.call_timeout_s = call_timeout_s
        self.fence_s = fence_s
        self.fence_check_s = fence_check_s
        self.log_to_driver = log_to_driver
        self._transport = transport
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
        return {str(camera["id"]): camera for camera in response.json()}

    def actors(self) -> dict[str, Any]:
        """The cameras' actors alive (or restarting) in the cluster now, by camera id."""
        import ray

        names = ray.util.list_named_actors(all_namespaces=True)
        found = {}
        for entry in names:
            if entry["namespace"] == self.namespace and entry["name"].startswith(ACTOR_PREFIX):
                camera_id = entry["name"][len(ACTOR_PREFIX) :]
                found[camera_id] = ray.get_actor(entry["name"], namespace=self.namespace)
        return found

    def _create(self, camera: dict[str, Any]) -> Any:
        camera_id = str(camera["id"])
        return (
            _actor_class()
            .options(
                name=actor_name(camera_id),
                namespace=self.namespace,
                get_if_exists=True,
                lifetime="detached",
                max_restarts=-1,
                max_task_retries=-1,
                num_cpus=self.cpus_per_camera,
                scheduling_strategy="SPREAD",
            )
            .remote(
                camera,
                server=self.server,
                key=self._key,
                spool_root=self.spool_root,
                config_path=self.config_path,
                job_factory=self.job_factory,
                definition=definition_hash(camera),
                namespace=self.namespace,
                fence_s=self.fence_s,
                fence_check_s=self.fence_check_s,
            )
        )

    def stop_camera(self, camera_id: str, handle: Any | None = None) -> None:
        """Stop the camera's job (waiting up to stop_timeout_s for it), kill its actor and wait until
        its name is free (so the next actor cannot overlap it)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        name = actor_name(camera_id)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                return
        try:
            returned = ray.get(handle.stop.remote(self.stop_timeout_s), timeout=self.stop_timeout_s + 5)
            if not returned:
                log.warning(
                    "camera %s: the job did not stop in %.0f s; killing it", camera_id, self.stop_timeout_s
                )
        except (GetTimeoutError, RayActorError):
            log.warning("camera %s: its actor did not answer the stop; killing it", camera_id)
        ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + self.call_timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                return
            time.sleep(0.1)
        log.warning(
            "camera %s: its actor's name is still held %.0f s after the kill", camera_id, self.call_timeout_s
        )

    def reconcile(self) -> Reconciled:
        """One pass: make the cluster's actors match the enabled cameras (see the module docstring)."""
        import ray
        from ray.exceptions import RayActorError

        done = Reconciled()
        wanted = self.fetch_cameras()
        if wanted is None:
            done.fetched = False
            return done
        existing = self.actors()
        for camera_id in sorted(set(existing) - set(wanted)):
            log.info("camera %s: disabled or removed; stopping its actor", camera_id)
            self.stop_camera(camera_id, existing[camera_id])
            done.stopped.append(camera_id)
        handles = {camera_id: self._create(camera) for camera_id, camera in sorted(wanted.items())}
        asked = {handle.status.remote(): camera_id for camera_id, handle in handles.items()}
        ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=self.call_timeout_s)
        answered = set()
        for ref in ready:
            camera_id = asked[ref]
            answered.add(camera_id)
            try:
                status = ray.get(ref)
            except RayActorError:  # killed meanwhile (another supervisor): made again next time
                done.pending.append(camera_id)
                continue
            if status["definition"] == definition_hash(wanted[camera_id]):
                (done.running if camera_id in existing else done.started).append(camera_id)
                continue
            log.info("camera %s: its definition changed; replacing its actor", camera_id)
            self.stop_camera(camera_id, handles[camera_id])
            self._create(wanted[camera_id])
            done.replaced.append(camera_id)
        for camera_id in sorted(set(handles) - answered):
            done.pending.append(camera_id)
        if done.started or done.replaced or done.stopped:
            log.info(
                "engine: %d cameras running, started %s, replaced %s, stopped %s, pending %s",
                len(done.running) + len(done.started),
                done.started,
                done.replaced,
                done.stopped,
                done.pending,
            )
        elif done.pending:
            log.info("engine: cameras not answering yet: %s", done.pending)
        return done

    # --- running ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Reconcile every poll_s until `stop` is set (connecting first)."""
        if not self._connected:
            self.connect()
        while not stop.is_set():
            started = time.monotonic()
            self.reconcile()
            stop.wait(max(0.0, self.poll_s - (time.monotonic() - started)))

    def start(self) -> None:
        """run() in a thread (for a process that hosts the engine beside other work)."""
        self.connect()
        self._halt.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._halt,), name="gridpatrol-engine", daemon=True
        )
        self._thread.start()

    def close(self, *, stop_cameras: bool = False) -> None:
        """Stop reconciling. stop_cameras: also stop every camera's actor in the cluster (they are
        detached: otherwise they go on, watched by the other supervisors). A local cluster this
        engine started is shut down, and its actors with it."""
        import ray

        self._halt.set()
        if self._thread is not None:
            self._thread.join(self.poll_s + self.call_timeout_s + self.stop_timeout_s)
            self._thread = None
        if not self._connected:
            return
        if stop_cameras or self._started_ray:
            actors = self.actors()
            log.info("engine: stopping the %d cameras' actors", len(actors))
            for camera_id, handle in actors.items():
                self.stop_camera(camera_id, handle)
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._connected = False

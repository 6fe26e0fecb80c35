"""The runner's engine (issue 14) on a real local Ray against the real case service: cameras in slots
(several cameras and one model per process) reporting their state, a disabled camera's job stopped
and an empty slot freed, a changed camera's job replaced without overlap, two supervisors electing one
leader that places each camera once, a killed slot process's cameras back within a stated time, and
the lead passing to another supervisor without restarting any camera.

The job is light and real (ReportingJob): it PUTs its camera's state every 0.5 s with its pid, and
holds an flock on <spool>/analysing while it runs; a second job on the same camera at once would find
the lock held and say so in <spool>/overlap. Each start is a line in <spool>/runs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.runner.engine import SLOT_PREFIX, CameraEngine
from api.runner.spool import Spool
from tests.runner.test_forwarder import LARGE, runner_incident

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray>=2.40')")

RESTART_BOUND_S = 30.0  # issue 14: a camera of a dead runner runs again within 30 s (measured ~1-3 s)
POLL_S = 1.0
CHECK_S = 0.5


class ReportingJob:
    """A camera job that reports its camera's state every 0.5 s until stopped (pid in runner_state)."""

    def __init__(
        self,
        camera: dict[str, Any],
        *,
        server: str,
        key: str,
        spool_dir: Path,
        config_path: Path | None,
        detector: Any,
    ) -> None:
        self.camera = camera
        self.server = server
        self.key = key
        self.spool_dir = spool_dir
        self.detector = detector

    def run(self, stop: threading.Event) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spool_dir / "analysing", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                (self.spool_dir / "overlap").write_text(str(os.getpid()))
                fcntl.flock(lock, fcntl.LOCK_EX)
            (self.spool_dir / "pid").write_text(str(os.getpid()))
            with open(self.spool_dir / "runs", "a") as runs:
                runs.write(f"{os.getpid()} {self.camera.get('name')} {id(self.detector)}\n")
            headers = {"Authorization": f"Bearer {self.key}"}
            with httpx.Client(base_url=self.server, headers=headers, timeout=5) as client:
                while not stop.is_set():
                    state = {"pid": os.getpid(), "name": self.camera.get("name")}
                    with contextlib.suppress(httpx.HTTPError):
                        client.put(
                            f"/api/cameras/{self.camera['id']}/state",
                            json={"fps": 2.0, "runner_state": state},
                        )
                    stop.wait(0.5)
            (self.spool_dir / "stopped").write_text(self.camera.get("name") or "")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # this machine cannot run Ray at all: say why
        pytest.skip(f"a local Ray cannot start here: {type(exc).__name__}: {exc}")
    yield
    ray.shutdown()


@pytest.fixture
def server(make_server, tmp_path: Path) -> Any:  # type: ignore[no-untyped-def]
    return make_server(f"sqlite:///{tmp_path / 'test.db'}")


@pytest.fixture
def make_engine(server: Any, tmp_path: Path, ray_cluster: None) -> Iterator[Callable[..., CameraEngine]]:
    namespace = f"gridpatrol-test-{uuid.uuid4().hex[:8]}"
    engines: list[CameraEngine] = []
    with server.client("admin") as admin:
        r = admin.post("/api/devices", json={"name": "runner-1", "runner": True})
        assert r.status_code == 201, r.text
        key = r.json()["key"]

    def make(**kwargs: Any) -> CameraEngine:
        engine = CameraEngine(
            server.url,
            key,
            spool_root=tmp_path / "spool",
            poll_s=POLL_S,
            check_s=CHECK_S,
            settle_s=2.0,
            job_factory=ReportingJob,
            namespace=namespace,
            stop_timeout_s=10,
            log_to_driver=False,
            **kwargs,
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:  # the slots are detached: the first engine still connected stops them all
        engine.close(stop_cameras=True)


def _add_camera(server: Any, camera_id: str, **extra: Any) -> None:
    with server.client("admin") as admin:
        body = {"id": camera_id, "stream_url": f"rtsp://10.0.0.1/{camera_id}", "name": camera_id, **extra}
        r = admin.post("/api/cameras", json=body)
        assert r.status_code == 201, r.text


def _runner_state(server: Any, camera_id: str) -> dict[str, Any]:
    with server.client("operator") as op:
        state = op.get(f"/api/cameras/{camera_id}").json()["state"]
    return state.get("runner_state") or {} if state.get("online") else {}


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _spool(tmp_path: Path, camera_id: str) -> Path:
    return tmp_path / "spool" / camera_id


def _runs(tmp_path: Path, camera_id: str) -> list[str]:
    path = _spool(tmp_path, camera_id) / "runs"
    return path.read_text().splitlines() if path.exists() else []


def _slot_names(engine: CameraEngine) -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == engine.namespace and a["name"].startswith(SLOT_PREFIX)
    )


def test_cameras_share_slots_are_stopped_replaced_and_freed(
    server: Any, make_engine: Callable[..., CameraEngine], tmp_path: Path
) -> None:
    for camera_id in ("gate-1", "gate-2", "gate-4"):
        _add_camera(server, camera_id)
    _add_camera(server, "gate-3", enabled=False)
    engine = make_engine(cameras_per_slot=2)
    engine.start()
    for camera_id in ("gate-1", "gate-2", "gate-4"):
        _wait(lambda c=camera_id: _runner_state(server, c).get("pid"), 60, f"{camera_id} reporting")
    placement = engine.placement()
    assert sorted(placement) == ["gate-1", "gate-2", "gate-4"]
    assert sorted(set(placement.values())) == [SLOT_PREFIX + "0", SLOT_PREFIX + "1"]
    assert placement["gate-1"] == placement["gate-2"]  # two to a slot: one process, one model
    assert _runner_state(server, "gate-1")["pid"] == _runner_state(server, "gate-2")["pid"]
    assert _runs(tmp_path, "gate-1")[0].split()[2] == _runs(tmp_path, "gate-2")[0].split()[2]
    assert _runner_state(server, "gate-4")["pid"] != _runner_state(server, "gate-1")["pid"]
    assert not _spool(tmp_path, "gate-3").exists()

    with server.client("admin") as admin:  # disabled: its job stopped, its slot-mate untouched
        assert admin.patch("/api/cameras/gate-2", json={"enabled": False}).status_code == 200
    took = _wait(lambda: (_spool(tmp_path, "gate-2") / "stopped").exists(), POLL_S + 10, "gate-2 stopped")
    print(f"disabled -> job stopped in {took:.1f} s (poll_s {POLL_S})")
    _wait(lambda: "gate-2" not in engine.placement(), 5, "gate-2 gone from its slot")
    assert len(_runs(tmp_path, "gate-1")) == 1

    with server.client("admin") as admin:  # changed: the old job returns before the new one starts
        assert admin.patch("/api/cameras/gate-1", json={"name": "North gate"}).status_code == 200
    took = _wait(
        lambda: _runner_state(server, "gate-1").get("name") == "North gate", POLL_S + 15, "gate-1 replaced"
    )
    print(f"changed -> new job reporting in {took:.1f} s")
    assert (_spool(tmp_path, "gate-1") / "stopped").read_text() == "gate-1"
    assert [line.split()[1] for line in _runs(tmp_path, "gate-1")] == ["gate-1", "North"]
    assert not (_spool(tmp_path, "gate-1") / "overlap").exists()

    with server.client("admin") as admin:  # its slot's only camera disabled: the slot is freed
        assert admin.patch("/api/cameras/gate-4", json={"enabled": False}).status_code == 200
    _wait(lambda: len(_slot_names(engine)) == 1, POLL_S + 15, "the empty slot stopped")
    assert engine.placement() == {"gate-1": SLOT_PREFIX + "0"}


def test_two_supervisors_elect_one_leader_that_places_each_camera_once(
    server: Any, make_engine: Callable[..., CameraEngine], tmp_path: Path
) -> None:
    cameras = [f"cam-{n}" for n in range(4)]
    for camera_id in cameras:
        _add_camera(server, camera_id)
    first, second = make_engine(cameras_per_slot=3), make_engine(cameras_per_slot=3)
    first.connect()
    second.connect()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda e=e: results.append(e.reconcile())) for e in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    assert sorted(r.leading for r in results) == [False, True]
    for camera_id in cameras:
        _wait(lambda c=camera_id: _runner_state(server, c).get("pid"), 60, f"{camera_id} reporting")
    for _ in range(3):  # and they go on agreeing
        first.reconcile()
        second.reconcile()
    assert _slot_names(first) == [SLOT_PREFIX + "0", SLOT_PREFIX + "1"]
    for camera_id in cameras:
        assert len(_runs(tmp_path, camera_id)) == 1, f"{camera_id}: started more than once"
        assert not (_spool(tmp_path, camera_id) / "overlap").exists()


def test_a_killed_slot_process_reports_again_within_the_bound(
    server: Any, make_engine: Callable[..., CameraEngine], tmp_path: Path
) -> None:
    _add_camera(server, "gate-1")
    _add_camera(server, "gate-2")
    engine = make_engine()
    engine.start()
    for camera_id in ("gate-1", "gate-2"):
        _wait(lambda c=camera_id: _runner_state(server, c).get("pid"), 60, f"{camera_id} reporting")
    pid = int((_spool(tmp_path, "gate-1") / "pid").read_text())
    assert int((_spool(tmp_path, "gate-2") / "pid").read_text()) == pid  # one slot
    os.kill(pid, signal.SIGKILL)
    for camera_id in ("gate-1", "gate-2"):
        took = _wait(
            lambda c=camera_id: _runner_state(server, c).get("pid") not in (None, pid),
            RESTART_BOUND_S,
            f"{camera_id} reporting from a new process",
        )
        print(f"kill -9 -> {camera_id} reporting again from a new process in {took:.1f} s")
        assert _runs(tmp_path, camera_id)[0].split()[0] == str(pid)
        assert not (_spool(tmp_path, camera_id) / "overlap").exists()
    assert sorted(engine.placement()) == ["gate-1", "gate-2"]


def test_the_runner_sends_the_backlog_of_a_camera_it_no_longer_runs(
    server: Any, make_engine: Callable[..., CameraEngine], tmp_path: Path
) -> None:
    """A camera disabled while the service was away left its backlog in its spool, sent only when
    the camera ran on that machine again; the runner now sends the spools no job holds."""
    _add_camera(server, "gate-9", enabled=False)
    with Spool(_spool(tmp_path, "gate-9"), **LARGE) as spool:
        for number in (1, 2):
            data, files = runner_incident(f"gate-9-backlog-{number}")
            spool.put({**data, "source_id": "gate-9"}, files)
    engine = make_engine(sweep_s=0.5)
    engine.start()
    with server.client("operator") as op:
        _wait(
            lambda: len(op.get("/api/cases", params={"camera": "gate-9"}).json()["items"]) == 2,
            30,
            "gate-9's backlog delivered",
        )
    assert engine.placement() == {}  # delivered, not analysed


def test_the_lead_passes_on_without_restarting_cameras(
    server: Any, make_engine: Callable[..., CameraEngine], tmp_path: Path
) -> None:
    _add_camera(server, "gate-1")
    first, second = make_engine(), make_engine()
    first.start()
    _wait(lambda: _runner_state(server, "gate-1").get("pid"), 60, "gate-1 reporting")
    second.start()
    time.sleep(2 * CHECK_S)
    assert second.reconcile().leading is False
    first.close()  # leaves the cameras running; the second supervisor takes the lead
    _add_camera(server, "gate-2")
    took = _wait(lambda: _runner_state(server, "gate-2").get("pid"), 30, "gate-2 placed by the new leader")
    print(f"lead passed on -> a new camera placed in {took:.1f} s")
    assert len(_runs(tmp_path, "gate-1")) == 1  # not restarted by the change of leader
    assert sorted(second.placement()) == ["gate-1", "gate-2"]

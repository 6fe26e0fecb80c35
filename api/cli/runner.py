"""`gridpatrol runner`: analyse the case service's live cameras on a Ray cluster (api.runner.engine).

    gridpatrol runner --server URL --key KEY                    a local Ray on this machine (its address is
                                                                logged for other machines to join)
    gridpatrol runner --server URL --key KEY --ray-address A    this machine joins the cluster at A: a Ray
                                                                node is started here (ended with the
                                                                runner), and this runner supervises too
    gridpatrol runner ... --ray-address auto                    the Ray node already running here

The key may come from GRIDPATROL_RUNNER_KEY instead of --key (a key on a command line is seen by
`ps`); it is never printed or logged. Ray is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from api.cli import CommandError

log = logging.getLogger(__name__)

KEY_ENV = "GRIDPATROL_RUNNER_KEY"
NODE_START_S = 60.0
CLOSE_S = 60.0  # the most stopping may take (each camera's job is given 30 s)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from api.runner.engine import DEFAULT_CAMERAS_PER_SLOT, DEFAULT_CPUS_PER_SLOT, DEFAULT_SPOOL_ROOT

    parser = subparsers.add_parser(
        "runner",
        help="analyse the case service's live cameras (Ray actors, several cameras and one model each)",
        description="Read the enabled cameras from the case service and keep them analysed in slots "
        "(Ray actors of up to --cameras-per-slot cameras sharing one model), on this machine or spread "
        "over a Ray cluster; cameras of a machine that dies run elsewhere.",
    )
    parser.add_argument("--server", required=True, help="the case service's base URL")
    parser.add_argument(
        "--key", default=None, help=f"the runner's device key (default: ${KEY_ENV}; device add NAME --runner)"
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="join the Ray cluster at HOST:PORT (a Ray node is started here), or 'auto' for the node "
        "already running here; default: start a local Ray",
    )
    parser.add_argument(
        "--spool-dir",
        default=DEFAULT_SPOOL_ROOT,
        help="each camera's spool is DIR/<camera id> on the machine that runs it (default: %(default)s)",
    )
    parser.add_argument("--poll-s", type=float, default=10.0, help="how often the camera list is read")
    parser.add_argument("--config", default=None, help="the site config (model, kinds, rules)")
    parser.add_argument(
        "--cameras-per-slot",
        type=int,
        default=DEFAULT_CAMERAS_PER_SLOT,
        help="cameras sharing one process and one model (default: %(default)s)",
    )
    parser.add_argument(
        "--cpus-per-slot",
        type=float,
        default=DEFAULT_CPUS_PER_SLOT,
        help="Ray logical CPUs each slot holds (default: %(default)s)",
    )
    parser.add_argument(
        "--upload-jobs",
        type=int,
        default=0,
        metavar="N",
        help="also run N upload job loops on this machine: footage uploaded to the case service, "
        "analysed here (api.runner.uploads); 0: none (default: %(default)s)",
    )
    parser.set_defaults(handler=_runner)


def _ray_environment() -> None:
    """No usage reports; token authentication when a cluster token is at hand (Ray 2.5x+ makes one
    for a local cluster in ~/.ray/auth_token; a machine joining another's cluster needs a copy of it
    there, or in RAY_AUTH_TOKEN)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    has_token = (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    )
    if has_token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _start_node(address: str) -> subprocess.Popen[bytes]:
    """A Ray node on this machine joined to the cluster at `address` (`ray start --block`)."""
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        raise CommandError("the `ray` command is not installed next to this Python")
    node = subprocess.Popen([ray_cli, "start", f"--address={address}", "--block"])
    deadline = time.monotonic() + NODE_START_S
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise CommandError(
                f"could not join the Ray cluster at {address} (ray start exited {node.returncode}); "
                "a cluster with token authentication needs its token on this machine "
                "(~/.ray/auth_token or RAY_AUTH_TOKEN)"
            )
        probe = subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True)
        if probe.returncode == 0:
            return node
        time.sleep(1)
    node.terminate()
    raise CommandError(f"the Ray node did not join {address} within {NODE_START_S:.0f} s")


def _runner(args: argparse.Namespace) -> int:
    from api.runner.engine import CameraEngine, EngineError

    key = args.key or os.environ.get(KEY_ENV)
    if not key:
        raise CommandError(f"give the runner's key with --key or ${KEY_ENV}")
    if args.poll_s <= 0 or args.cpus_per_slot <= 0 or args.cameras_per_slot < 1:
        raise CommandError("--poll-s, --cpus-per-slot and --cameras-per-slot must be positive")
    if args.config is not None and not Path(args.config).is_file():
        raise CommandError(f"--config {args.config}: no such file")
    _ray_environment()
    node = None
    if args.ray_address and args.ray_address != "auto":
        node = _start_node(args.ray_address)
    engine = CameraEngine(
        args.server,
        key,
        ray_address=args.ray_address,
        spool_root=args.spool_dir,
        poll_s=args.poll_s,
        config_path=args.config,
        cameras_per_slot=args.cameras_per_slot,
        cpus_per_slot=args.cpus_per_slot,
    )
    stop = threading.Event()
    try:
        engine.connect()
    except EngineError as exc:
        _end_node(node)
        raise CommandError(str(exc)) from None
    from api.runner.uploads import start_upload_jobs

    start_upload_jobs(args.upload_jobs, server=args.server, key=key, config_path=args.config)
    for signum in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which sets its own
        signal.signal(signum, lambda *_: stop.set())
    failure: list[BaseException] = []

    def supervise() -> None:
        try:
            engine.run(stop)
        except BaseException as exc:  # ends the command below with the reason
            failure.append(exc)
            stop.set()

    supervisor = threading.Thread(target=supervise, name="gridpatrol-engine", daemon=True)
    supervisor.start()
    while not stop.wait(1.0):  # a signal handler runs between these waits
        pass

    # The engine's Ray calls can hang when this node's raylet is gone: closing is bounded.
    def close() -> None:
        supervisor.join()  # its reconcile in progress ends first
        engine.close()

    closer = threading.Thread(target=close, name="gridpatrol-engine-close", daemon=True)
    closer.start()
    closer.join(CLOSE_S)
    _end_node(node)
    if closer.is_alive():
        log.error("the Ray cluster did not answer within %.0f s while stopping; exiting", CLOSE_S)
        logging.shutdown()
        os._exit(1)  # Ray's exit hooks would wait on the same dead cluster
    if failure and isinstance(failure[0], EngineError):
        raise CommandError(str(failure[0]))
    if failure:
        raise failure[0]
    return 0


def _end_node(node: subprocess.Popen[bytes] | None) -> None:
    if node is not None and node.poll() is None:
        node.terminate()
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()

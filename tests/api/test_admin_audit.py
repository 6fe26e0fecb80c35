"""Who did this: every admin change to accounts and integrations (users, devices, webhooks, cameras,
the grid) logs one INFO line naming the acting admin, the action and its target, the same through the
API, the admin pages (over a real server) and the CLI (the local operator), with no password, device
key, webhook secret, token or URL password in the log."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import main
from tests.api.api_testkit import DEMO_GRID, LiveServer

HOOK_URL = "http://hookuser:hook-pw-77@127.0.0.1:9/in?token=hook-tok-77"
CAMERA_URL = "rtsp://camuser:cam-pw-55@10.1.2.3:554/live?token=cam-tok-55"
CAMERA_URL_2 = "rtsp://camuser:cam-pw-66@10.1.2.4:554/live"
URL_SECRETS = ["hook-pw-77", "hook-tok-77", "cam-pw-55", "cam-tok-55", "cam-pw-66", "camuser:"]


@pytest.fixture
def server(make_server: Any, sqlite_url: str) -> LiveServer:
    return make_server(sqlite_url, run_webhooks=False, settings={"webhook_allow_hosts": "127.0.0.1"})


class Audit:
    """The audit lines logged so far; `new()` the ones since its last call."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        self.caplog = caplog
        self.seen = 0

    def lines(self) -> list[str]:
        return [
            r.getMessage()
            for r in self.caplog.records
            if r.name == "api.admin_log"
            and r.levelno == logging.INFO
            and r.getMessage().startswith("admin action:")
        ]

    def one(self, actor: str, action: str, target: str) -> str:
        """The single line logged since the last call: it names `actor`, `action` and `target`."""
        lines = self.lines()
        new, self.seen = lines[self.seen :], len(lines)
        assert len(new) == 1, new
        assert f"by={actor} " in new[0] and f" action={action} " in new[0], new[0]
        assert re.search(rf" target={re.escape(target)}( |$)", new[0]), new[0]
        return new[0]

    def has_none_of(self, secrets: list[str]) -> None:
        assert all(len(s) >= 8 for s in secrets)
        text = self.caplog.text
        assert [s for s in secrets if s in text] == []


def test_api_admin_actions_each_log_who_did_what_to_which_without_secrets(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    audit = Audit(caplog)
    admin_id = "user:admin"
    secrets = [server.tokens["admin"], "new-user-pw-1", "changed-pw-22", "given-hook-secret-123456789012"]
    with server.client("admin") as admin:
        r = admin.post(
            "/api/users", json={"username": "carol", "password": "new-user-pw-1", "role": "viewer"}
        )
        assert r.status_code == 201, r.text
        assert "role=viewer" in audit.one(admin_id, "user.add", "user:carol")
        assert admin.post("/api/users/carol/deactivate").status_code == 200
        audit.one(admin_id, "user.deactivate", "user:carol")
        assert admin.post("/api/users/carol/activate").status_code == 200
        audit.one(admin_id, "user.activate", "user:carol")
        r = admin.put("/api/users/carol/password", json={"password": "changed-pw-22"})
        assert r.status_code == 200, r.text
        audit.one(admin_id, "user.password", "user:carol")
        r = admin.patch("/api/users/carol", json={"role": "enforcement", "team": "team-hubin"})
        assert r.status_code == 200, r.text
        line = audit.one(admin_id, "user.change", "user:carol")
        assert "role=enforcement team=team-hubin" in line

        r = admin.post("/api/devices", json={"name": "van-7", "camera_id": "cam-7"})
        assert r.status_code == 201, r.text
        secrets.append(r.json()["key"])
        assert "camera=cam-7" in audit.one(admin_id, "device.add", "device:van-7")
        r = admin.post("/api/devices/van-7/rotate")
        assert r.status_code == 200, r.text
        secrets.append(r.json()["key"])
        audit.one(admin_id, "device.rotate", "device:van-7")
        assert admin.post("/api/devices/van-7/revoke").status_code == 200
        audit.one(admin_id, "device.revoke", "device:van-7")

        r = admin.post("/api/webhooks", json={"url": HOOK_URL})
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        secrets.append(r.json()["secret"])
        line = audit.one(admin_id, "webhook.add", f"webhook:{hook}")
        assert "url=http://hookuser:***@127.0.0.1:9/in?token=***" in line
        assert admin.delete(f"/api/webhooks/{hook}").status_code == 200
        audit.one(admin_id, "webhook.deactivate", f"webhook:{hook}")
        assert admin.post(f"/api/webhooks/{hook}/activate").status_code == 200
        audit.one(admin_id, "webhook.activate", f"webhook:{hook}")
        r = admin.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.1:9/other", "secret": "given-hook-secret-123456789012"},
        )
        assert r.status_code == 201, r.text
        audit.one(admin_id, "webhook.add", f"webhook:{r.json()['id']}")

        r = admin.post("/api/cameras", json={"id": "gate-9", "stream_url": CAMERA_URL})
        assert r.status_code == 201, r.text
        assert "stream=rtsp://10.1.2.3:554" in audit.one(admin_id, "camera.add", "camera:gate-9")
        r = admin.patch("/api/cameras/gate-9", json={"stream_url": CAMERA_URL_2, "enabled": False})
        assert r.status_code == 200, r.text
        line = audit.one(admin_id, "camera.edit", "camera:gate-9")
        assert "fields=enabled,stream_url stream=rtsp://10.1.2.4:554 enabled=False" in line

        grid = json.loads(DEMO_GRID.read_text())
        assert admin.put("/api/grids", json=grid).status_code == 200
        assert f"cells={len(grid['features'])}" in audit.one(admin_id, "grid.import", "grid")

        # changing nothing (deactivating an inactive user) is no action; a refused one neither
        assert admin.post("/api/devices/van-7/revoke").status_code == 200
        assert (
            admin.post(
                "/api/users", json={"username": "carol", "password": "x" * 9, "role": "viewer"}
            ).status_code
            == 409
        )
    assert len(audit.lines()) == audit.seen
    audit.has_none_of(secrets + URL_SECRETS)


def test_admin_page_actions_log_the_same_lines(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    audit = Audit(caplog)
    admin_id = "user:admin"
    secrets = [server.tokens["admin"], "page-user-pw-1", "page-changed-pw-2", "page-hook-secret-123456789012"]
    with server.browser("admin") as admin:

        def post(path: str, **kwargs: Any) -> None:
            r = admin.post(path, **kwargs)
            assert r.status_code in (200, 303), r.text
            assert 'id="admin-problem"' not in r.text, r.text

        post("/admin/users", data={"username": "dave", "role": "viewer", "password": "page-user-pw-1"})
        audit.one(admin_id, "user.add", "user:dave")
        post("/admin/users/dave/deactivate")
        audit.one(admin_id, "user.deactivate", "user:dave")
        post("/admin/users/dave/activate")
        audit.one(admin_id, "user.activate", "user:dave")
        post("/admin/users/dave/password", data={"password": "page-changed-pw-2"})
        audit.one(admin_id, "user.password", "user:dave")
        post("/admin/users/dave/change", data={"role": "operator", "team": ""})
        assert "role=operator" in audit.one(admin_id, "user.change", "user:dave")

        r = admin.post("/admin/devices", data={"name": "van-8", "camera": "cam-8"})
        key = re.search(r'id="secret"[^>]* value="(gpd_[^"]+)"', r.text)
        assert key is not None
        secrets.append(key.group(1))
        audit.one(admin_id, "device.add", "device:van-8")
        r = admin.post("/admin/devices/van-8/rotate")
        key = re.search(r'id="secret"[^>]* value="(gpd_[^"]+)"', r.text)
        assert key is not None
        secrets.append(key.group(1))
        audit.one(admin_id, "device.rotate", "device:van-8")
        post("/admin/devices/van-8/revoke")
        audit.one(admin_id, "device.revoke", "device:van-8")

        post("/admin/webhooks", data={"url": HOOK_URL, "secret": "page-hook-secret-123456789012"})
        hook = server.client("admin").get("/api/webhooks").json()[0]["id"]
        assert "url=http://hookuser:***@" in audit.one(admin_id, "webhook.add", f"webhook:{hook}")
        post(f"/admin/webhooks/{hook}/deactivate")
        audit.one(admin_id, "webhook.deactivate", f"webhook:{hook}")
        post(f"/admin/webhooks/{hook}/activate")
        audit.one(admin_id, "webhook.activate", f"webhook:{hook}")

        post("/admin/grid", files={"file": ("my grid.geojson", DEMO_GRID.read_bytes())})
        line = audit.one(admin_id, "grid.import", "grid")
        assert 'file="my grid.geojson"' in line
    assert len(audit.lines()) == audit.seen
    audit.has_none_of(secrets + URL_SECRETS)


def test_cli_actions_log_the_local_operator(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    monkeypatch.setenv("USER", "ops-anna")
    monkeypatch.setenv("LOGNAME", "ops-anna")
    audit = Audit(caplog)
    me = "operator:ops-anna"
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("cli-user-pw-1\n"))
    assert main(["user", "add", "erin", "--role", "viewer", "--password-stdin"]) == 0
    audit.one(me, "user.add", "user:erin")
    monkeypatch.setattr(sys, "stdin", io.StringIO("cli-changed-pw-2\n"))
    assert main(["user", "passwd", "erin", "--password-stdin"]) == 0
    audit.one(me, "user.password", "user:erin")
    assert main(["user", "deactivate", "erin"]) == 0
    audit.one(me, "user.deactivate", "user:erin")
    assert main(["device", "add", "van-9"]) == 0
    audit.one(me, "device.add", "device:van-9")
    assert main(["device", "rotate", "van-9"]) == 0
    audit.one(me, "device.rotate", "device:van-9")
    keys = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gpd_")]
    assert len(keys) == 2
    assert main(["grid", "import", str(DEMO_GRID)]) == 0
    audit.one(me, "grid.import", "grid")
    assert main(["webhook", "add", HOOK_URL]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    audit.one(me, "webhook.add", "webhook:1")
    assert main(["camera", "add", "gate-3", "--url", CAMERA_URL]) == 0
    audit.one(me, "camera.add", "camera:gate-3")
    assert main(["camera", "disable", "gate-3"]) == 0
    audit.one(me, "camera.edit", "camera:gate-3")
    audit.has_none_of(["cli-user-pw-1", "cli-changed-pw-2", secret, *keys, *URL_SECRETS])


def test_cli_camera_changes_are_logged_only_once_committed(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The camera commands logged `admin action: ... camera.add` (and said the camera was added) before
    committing: a commit that failed left a line for a change that never happened."""
    from api.storage.db import make_engine

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("USER", "ops-anna")
    monkeypatch.setenv("LOGNAME", "ops-anna")
    audit = Audit(caplog)
    assert main(["camera", "add", "gate-3", "--url", CAMERA_URL]) == 0
    audit.one("operator:ops-anna", "camera.add", "camera:gate-3")
    # from now on every change to a camera fails at its COMMIT (a deferred foreign key the triggers
    # break: one line naming the refusal)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE no_parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql(
                "CREATE TABLE refused_at_commit (parent INTEGER REFERENCES no_parent(id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
            for change in ("INSERT", "UPDATE"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuse_camera_{change.lower()} AFTER {change} ON cameras "
                    "BEGIN INSERT INTO refused_at_commit VALUES (1); END"
                )
    finally:
        engine.dispose()
    site = tmp_path / "site.yaml"
    config = Path("configs/site.yaml").read_text(encoding="utf-8")
    site.write_text(
        config.replace(
            "  - id: demo-cam-02\n", "  - id: demo-cam-02\n    source: rtsp://cam2.example/live\n"
        ),
        encoding="utf-8",
    )
    capsys.readouterr()
    for argv in (
        ["add", "gate-4", "--url", CAMERA_URL_2],
        ["edit", "gate-3", "--name", "North gate"],
        ["disable", "gate-3"],
        ["import", str(site)],
    ):
        assert main(["camera", *argv]) == 1
        assert audit.lines()[audit.seen :] == [], argv
        out, err = capsys.readouterr()
        assert out == "", argv  # not said to be done either
        assert "refused the change at commit (FOREIGN KEY constraint failed)" in err, argv
    assert main(["camera", "list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert [row.split()[:2] for row in listed[1:]] == [["gate-3", "yes"]]  # as it was

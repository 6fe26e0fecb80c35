"""Accounts a district operates: revoking and rotating device keys, deactivating users, passwords,
login throttling; over real HTTP and through the `gridpatrol` CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import logging
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from api.accounts import accounts as auth
from api.accounts import tokens
from api.accounts.tokens import PrincipalCache
from api.cli.main import main
from api.storage.db import session_scope, utcnow
from api.storage.models import LoginFailure
from tests.api.api_testkit import LiveServer, incident_json, post_incident

MAX_FAILURES = 5


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def _login(server: LiveServer, username: str, password: str):  # type: ignore[no-untyped-def]
    with server.client() as anon:
        return anon.post("/api/auth/token", data={"username": username, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(response) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    first = response.json()["errors"][0]
    return first["field"], first["reason"]


# --- devices -----------------------------------------------------------------------------------


def test_revoked_device_key_gets_401_at_once_and_its_cases_stay(server: LiveServer) -> None:
    with server.client("device") as device, server.client("admin") as admin:
        created = post_incident(device, incident_json("inc-rev"))
        assert created.status_code == 201, created.text
        case_id = created.json()["case_id"]
        assert device.get("/api/jobs/999").status_code == 404  # the key is good (and now cached)

        revoked = admin.post("/api/devices/van-1/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["active"] is False and revoked.json()["revoked_at"]

        refused = device.get("/api/jobs/999")
        assert refused.status_code == 401 and _error(refused)[0] == "Authorization"
        assert post_incident(device, incident_json("inc-rev-2")).status_code == 401
        case = admin.get(f"/api/cases/{case_id}").json()
        assert case["device_id"] == revoked.json()["id"] and case["history"][0]["who"] == "device:van-1"

        again = admin.post("/api/devices/van-1/revoke")  # idempotent
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
        missing = admin.post("/api/devices/van-404/revoke")
        assert missing.status_code == 404 and _error(missing) == ("name", "no device 'van-404'")
        bad = admin.post("/api/devices/not%20a%20name/revoke")
        assert bad.status_code == 422 and _error(bad)[0] == "name"
    with server.client("operator") as op:
        assert op.post("/api/devices/van-1/revoke").status_code == 403
        assert op.get("/api/devices").status_code == 403


def test_rotate_gives_a_new_key_and_kills_the_old_one(server: LiveServer) -> None:
    old_key = server.tokens["device"]
    with server.client("admin") as admin, server.client("device") as old:
        assert old.get("/api/jobs/999").status_code == 404
        rotated = admin.post("/api/devices/van-1/rotate")
        assert rotated.status_code == 200, rotated.text
        new_key = rotated.json()["key"]
        assert new_key.startswith("gpd_") and new_key != old_key
        assert old.get("/api/jobs/999").status_code == 401
        assert admin.get("/api/jobs/999", headers=_bearer(new_key)).status_code == 404

        listed = {d["name"]: d for d in admin.get("/api/devices").json()}
        assert listed["van-1"]["last_used_at"] and listed["van-1"]["revoked_at"] is None
        assert "key" not in listed["van-1"] and "key_hash" not in listed["van-1"]

        # a revoked device comes back with a fresh key; the revoked key stays dead
        assert admin.post("/api/devices/van-1/revoke").status_code == 200
        assert admin.get("/api/jobs/999", headers=_bearer(new_key)).status_code == 401
        back = admin.post("/api/devices/van-1/rotate").json()
        assert back["active"] is True and back["revoked_at"] is None
        assert admin.get("/api/jobs/999", headers=_bearer(back["key"])).status_code == 404
        assert admin.get("/api/jobs/999", headers=_bearer(new_key)).status_code == 401


# --- users -------------------------------------------------------------------------------------


def test_deactivated_user_is_locked_out_at_once_and_can_come_back(server: LiveServer) -> None:
    with server.client("device") as device, server.client("operator") as op, server.client("admin") as admin:
        case_id = post_incident(device, incident_json("inc-deact")).json()["case_id"]
        assert op.post(f"/api/cases/{case_id}/transitions", data={"to": "filed"}).status_code == 200

        gone = admin.post("/api/users/operator/deactivate")
        assert gone.status_code == 200 and gone.json()["active"] is False
        refused = op.get("/api/me")
        assert refused.status_code == 401 and _error(refused)[0] == "Authorization"
        assert _login(server, "operator", "password-operator").status_code == 401
        history = admin.get(f"/api/cases/{case_id}").json()["history"]
        assert ("filed", "user:operator") in [(h["what"], h["who"]) for h in history]

        assert admin.post("/api/users/operator/activate").json()["active"] is True
        assert op.get("/api/me").status_code == 401  # old tokens were deleted, not suspended
        token = _login(server, "operator", "password-operator").json()["access_token"]
        assert op.get("/api/me", headers=_bearer(token)).json()["name"] == "operator"

        users = {u["username"]: u for u in admin.get("/api/users").json()}
        assert users["operator"]["active"] and users["operator"]["last_login_at"]
        assert "password_hash" not in users["operator"]

        last = admin.post("/api/users/admin/deactivate")
        assert last.status_code == 409 and _error(last) == ("username", "'admin' is the last active admin")
        missing = admin.post("/api/users/nobody/deactivate")
        assert missing.status_code == 404 and _error(missing) == ("username", "no user 'nobody'")


def test_two_admins_deactivating_each_other_at_once_leave_one_active(server: LiveServer) -> None:
    """Each sees the other active when it starts; the second must wait for the first and then be
    refused (PostgreSQL: the active admins' rows are locked; SQLite: writers are serialised)."""
    factory = server.services.factory
    with session_scope(factory) as session:
        auth.create_user(session, username="admin2", password="password-admin2", role="admin")

    def deactivate_admin2() -> None:
        with session_scope(factory) as session:
            auth.set_user_active(session, username="admin2", active=False)

    first = factory()
    with ThreadPoolExecutor(1) as pool:
        try:
            assert auth.set_user_active(first, username="admin", active=False)[1]
            second = pool.submit(deactivate_admin2)
            time.sleep(0.5)
            assert not second.done()  # waits for the first to end instead of counting 'admin' as active
            first.commit()
        finally:
            first.close()
        with pytest.raises(auth.AccountConflict, match="'admin2' is the last active admin"):
            second.result(timeout=30)
    with factory() as session:
        assert [u.username for u in auth.list_users(session) if u.role == "admin" and u.active] == ["admin2"]


def test_admin_sets_a_password(server: LiveServer) -> None:
    with server.client("admin") as admin, server.client("viewer") as viewer:
        short = admin.put("/api/users/viewer/password", json={"password": "short"})
        assert short.status_code == 422 and _error(short)[0] == "password"
        for _ in range(MAX_FAILURES):
            assert _login(server, "viewer", "not-the-password").status_code == 401
        assert _login(server, "viewer", "password-viewer").status_code == 429
        ok = admin.put("/api/users/viewer/password", json={"password": "a-new-password"})
        assert ok.status_code == 200, ok.text
        assert viewer.get("/api/me").status_code == 401  # logged out everywhere
        assert _login(server, "viewer", "password-viewer").status_code == 401  # throttle cleared
        assert _login(server, "viewer", "a-new-password").status_code == 200


def test_a_changed_role_and_team_apply_from_the_users_next_request(server: LiveServer) -> None:
    """An operator made admin, an enforcement member moved to another team: their token and their
    page session (both already resolved and cached by the server) carry the new role and team on the
    very next request, without logging in again."""
    with (
        server.client("admin") as admin,
        server.client("operator") as op,
        server.browser("operator") as op_page,
        server.client("ziyang") as ziyang,
    ):
        assert op.get("/api/users").status_code == 403
        assert op_page.get("/admin/users").status_code == 403
        assert ziyang.get("/api/me").json()["team"] == "team-ziyang"

        promoted = admin.patch("/api/users/Operator", json={"role": "admin"})  # the name in any case
        assert promoted.status_code == 200, promoted.text
        assert (promoted.json()["username"], promoted.json()["role"]) == ("operator", "admin")
        assert op.get("/api/users").status_code == 200
        assert op_page.get("/admin/users").status_code == 200
        assert op.get("/api/me").json()["role"] == "admin"

        moved = admin.patch("/api/users/ziyang", json={"team": "team-hubin"})
        assert moved.status_code == 200 and moved.json()["team"] == "team-hubin", moved.text
        assert moved.json()["role"] == "enforcement" and moved.json()["notice"] is None
        assert ziyang.get("/api/me").json() == {
            "kind": "user",
            "name": "ziyang",
            "role": "enforcement",
            "team": "team-hubin",
        }
        void = admin.patch("/api/users/ziyang", json={"team": " team-void "})
        assert void.json()["team"] == "team-void"
        assert "no grid cell belongs to team 'team-void'" in void.json()["notice"]

        # demoted again by the other admin: back to an operator's reach on the next request
        back = op.patch("/api/users/operator", json={"role": "operator"})
        assert back.status_code == 200 and back.json()["role"] == "operator"
        assert op.get("/api/users").status_code == 403
        assert op.get("/api/me").status_code == 200  # still logged in


def test_a_role_or_team_change_is_refused_by_the_rules_of_adding_a_user(server: LiveServer) -> None:
    with server.client("admin") as admin, server.client("operator") as op:
        for name, body, field in (
            ("viewer", {"role": "enforcement"}, "team"),  # an enforcement user needs a team
            ("viewer", {"role": "enforcement", "team": "  "}, "team"),
            ("ziyang", {"team": None}, "team"),
            ("ziyang", {"team": ""}, "team"),
            ("ziyang", {"role": "viewer", "team": "team\u0000x"}, "team"),
            ("ziyang", {"role": "chief"}, "role"),
            ("ziyang", {"role": "viewer", "badge": 7}, "badge"),
        ):
            refused = admin.patch(f"/api/users/{name}", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert _error(refused)[0] == field, (body, refused.text)
        missing = admin.patch("/api/users/nobody", json={"role": "viewer"})
        assert missing.status_code == 404 and _error(missing) == ("username", "no user 'nobody'")
        last = admin.patch("/api/users/ADMIN", json={"role": "operator"})
        assert last.status_code == 409 and _error(last) == ("role", "'admin' is the last active admin")
        assert op.patch("/api/users/operator", json={"role": "admin"}).status_code == 403

        users = {u["username"]: u for u in admin.get("/api/users").json()}
        assert (users["admin"]["role"], users["operator"]["role"]) == ("admin", "operator")
        assert (users["viewer"]["role"], users["ziyang"]["team"]) == ("viewer", "team-ziyang")
        same = admin.patch("/api/users/viewer", json={})
        assert same.status_code == 200 and same.json()["role"] == "viewer"
        # a viewer made enforcement with a team; an enforcement member made viewer keeps the team
        made = admin.patch("/api/users/viewer", json={"role": "enforcement", "team": "team-hubin"})
        assert (made.json()["role"], made.json()["team"]) == ("enforcement", "team-hubin")
        lifted = admin.patch("/api/users/viewer", json={"role": "viewer", "team": None})
        assert (lifted.json()["role"], lifted.json()["team"]) == ("viewer", None)


def test_two_admins_demoting_each_other_at_once_leave_one_admin(server: LiveServer) -> None:
    """As deactivating: the second demotion waits for the first, then finds the last admin."""
    factory = server.services.factory
    with session_scope(factory) as session:
        auth.create_user(session, username="admin2", password="password-admin2", role="admin")

    def demote_admin2() -> None:
        with session_scope(factory) as session:
            auth.change_user(session, username="admin2", role="operator")

    first = factory()
    with ThreadPoolExecutor(1) as pool:
        try:
            assert auth.change_user(first, username="admin", role="viewer")[1]
            second = pool.submit(demote_admin2)
            time.sleep(0.5)
            assert not second.done()
            first.commit()
        finally:
            first.close()
        with pytest.raises(auth.AccountConflict, match="'admin2' is the last active admin"):
            second.result(timeout=30)
    with factory() as session:
        assert [u.username for u in auth.list_users(session) if u.role == "admin" and u.active] == ["admin2"]


def test_admin_routes_find_a_user_in_any_case(server: LiveServer) -> None:
    """Login takes 'Viewer' for 'viewer'; so do the admin routes that name a user."""
    with server.client("admin") as admin, server.client("viewer") as viewer:
        gone = admin.post("/api/users/Viewer/deactivate")
        assert gone.status_code == 200 and gone.json()["username"] == "viewer", gone.text
        assert viewer.get("/api/me").status_code == 401
        assert admin.post("/api/users/VIEWER/activate").json()["active"] is True
        ok = admin.put("/api/users/vIEWER/password", json={"password": "a-new-password"})
        assert ok.status_code == 200 and ok.json()["username"] == "viewer"
        assert _login(server, "viewer", "a-new-password").status_code == 200


def test_the_users_page_changes_a_role_and_team_and_shows_refusals(server: LiveServer) -> None:
    with server.browser("admin") as admin, server.client("ziyang") as ziyang:
        page = admin.get("/admin/users")
        assert 'action="/admin/users/ziyang/change"' in page.text and "Change role or team" in page.text

        moved = admin.post("/admin/users/Ziyang/change", data={"role": "enforcement", "team": "team-hubin"})
        assert moved.status_code == 303
        assert moved.headers["location"] == "/admin/users?done=changed&name=ziyang"
        shown = admin.get(moved.headers["location"])
        assert "Role and team of ziyang changed" in shown.text
        assert ziyang.get("/api/me").json()["team"] == "team-hubin"
        void = admin.post("/admin/users/ziyang/change", data={"role": "enforcement", "team": "team-void"})
        assert void.headers["location"] == "/admin/users?done=changed_no_cells&name=ziyang"
        same = admin.post("/admin/users/ziyang/change", data={"role": "enforcement", "team": "team-void"})
        assert same.headers["location"] == "/admin/users?done=unchanged&name=ziyang"

        for data, status, text in (
            ({"role": "enforcement", "team": ""}, 422, "An enforcement user must belong to a team."),
            ({"role": "chief", "team": ""}, 422, "Choose a role."),
            ({"role": "viewer", "team": ""}, 404, "There is no user nobody."),
        ):
            name = "nobody" if status == 404 else "ziyang"
            refused = admin.post(f"/admin/users/{name}/change", data=data)
            assert refused.status_code == status and text in refused.text, refused.text[-800:]
            assert 'id="admin-problem"' in refused.text
        last = admin.post("/admin/users/admin/change", data={"role": "operator", "team": ""})
        assert last.status_code == 409, last.text[-800:]
        assert "admin is the last active admin and must stay an admin" in last.text
        assert ziyang.get("/api/me").json()["team"] == "team-void"
        admin.cookies.set("gp_lang", "zh-CN")
        zh = admin.post("/admin/users/admin/change", data={"role": "viewer", "team": ""})
        assert zh.status_code == 409 and "必须保留管理员角色" in zh.text


# --- login throttling --------------------------------------------------------------------------


def test_login_throttled_after_failures_with_retry_after(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.accounts")
    for i in range(MAX_FAILURES):
        bad = _login(server, "admin", f"wrong-password-{i}")
        assert bad.status_code == 401 and _error(bad) == ("password", "username or password is wrong")
    throttled = _login(server, "admin", "password-admin")  # right password, not even checked
    assert throttled.status_code == 429
    field, reason = _error(throttled)
    assert field == "username" and "too many failed logins" in reason
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= 900 and f"{retry_after} s" in reason
    text = caplog.text
    assert "failed login for username 'admin'" in text and "login refused for username 'admin'" in text
    assert "wrong-password" not in text and "password-admin" not in text

    # other usernames are not affected; once the window has ended the user can log in
    assert _login(server, "viewer", "password-viewer").status_code == 200
    with server.services.factory() as session:
        session.execute(update(LoginFailure).values(window_start=utcnow() - timedelta(seconds=901)))
        session.commit()
    assert _login(server, "admin", "password-admin").status_code == 200


def test_a_success_before_the_limit_resets_the_count(server: LiveServer) -> None:
    for _ in range(2):
        for _ in range(MAX_FAILURES - 1):
            assert _login(server, "viewer", "wrong-password").status_code == 401
        assert _login(server, "viewer", "password-viewer").status_code == 200
    assert _login(server, "viewer", "wrong-password").status_code == 401


def test_unknown_usernames_are_throttled_the_same_way(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.accounts")
    # a password typed into the username field never reaches the log; a fingerprint does
    assert _login(server, "S3cret-typed-in-the-wrong-field", "x").status_code == 401
    assert "S3cret" not in caplog.text and "failed login for an unknown username (fingerprint" in caplog.text
    answers = [_login(server, "ghost", "whatever-pw") for _ in range(MAX_FAILURES + 1)]
    assert "login refused for an unknown username" in caplog.text and "ghost" not in caplog.text
    assert [r.status_code for r in answers] == [401] * MAX_FAILURES + [429]
    known = [_login(server, "viewer", "whatever-pw") for _ in range(MAX_FAILURES + 1)]
    assert [r.json() for r in known[:-1]] == [r.json() for r in answers[:-1]]
    assert _error(known[-1])[0] == _error(answers[-1])[0] == "username"


def test_ended_windows_are_forgotten(server: LiveServer) -> None:
    assert _login(server, "ghost", "whatever-pw").status_code == 401
    with server.services.factory() as session:
        session.execute(update(LoginFailure).values(window_start=utcnow() - timedelta(seconds=901)))
        session.commit()
    assert _login(server, "another-ghost", "whatever-pw").status_code == 401  # starts a window
    with server.services.read_factory() as session:
        assert [r.username for r in session.query(LoginFailure)] == ["another-ghost"]


def test_parallel_guesses_do_not_overshoot_the_limit(server: LiveServer) -> None:
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _login(server, "admin", f"guess-{i}").status_code, range(12)))
    assert sorted(codes) == [401] * MAX_FAILURES + [429] * (12 - MAX_FAILURES)


# --- the principal cache across processes ------------------------------------------------------


def test_principal_cache_follows_the_shared_epoch_file(tmp_path: Path) -> None:
    epoch = tmp_path / "credentials.epoch"
    here, there = PrincipalCache(epoch_file=epoch), PrincipalCache(epoch_file=epoch)
    someone = auth.Principal(kind="device", name="van-1", role="device")
    here.put("gpd_x", someone, here.stamp(), expires_at=None)
    assert here.get("gpd_x") == someone and here.get("gpd_y") is None
    there.invalidate()  # another process revoked something
    assert here.get("gpd_x") is None
    stamp = here.stamp()
    here.put("gpd_x", someone, stamp, expires_at=None)
    assert here.get("gpd_x") == someone
    # a change while a key was being looked up: the looked-up principal is not trusted
    stale = here.stamp()
    there.invalidate()
    here.put("gpd_x", someone, stale, expires_at=None)
    assert here.get("gpd_x") is None
    off = PrincipalCache(ttl_s=0, epoch_file=epoch)
    off.put("gpd_x", someone, off.stamp(), expires_at=None)
    assert off.get("gpd_x") is None


def test_principal_cache_never_outlives_the_credential(tmp_path: Path) -> None:
    cache = PrincipalCache(ttl_s=10.0, epoch_file=tmp_path / "credentials.epoch")
    someone = auth.Principal(kind="user", name="viewer", role="viewer", user_id=1)
    cache.put("ended", someone, cache.stamp(), expires_at=utcnow() - timedelta(seconds=1))
    assert cache.get("ended") is None  # an already ended token is not remembered at all
    cache.put("ending", someone, cache.stamp(), expires_at=utcnow() + timedelta(seconds=0.3))
    cache.put("device", someone, cache.stamp(), expires_at=None)  # a key that does not expire
    assert cache.get("ending") == someone and cache.get("device") == someone
    time.sleep(0.4)  # past the token's expiry, well within the cache's 10 s
    assert cache.get("ending") is None and cache.get("device") == someone


def test_token_used_just_before_its_expiry_is_refused_after_it(server: LiveServer) -> None:
    """The principal cache (GRIDPATROL_AUTH_CACHE_S, 10 s here) keeps no token past its own end."""
    assert server.services.settings.auth_cache_s == 10.0
    lifetime_s = 1.5
    token = tokens.login(
        server.services.factory, username="viewer", password="password-viewer", ttl_h=lifetime_s / 3600
    )
    issued = time.monotonic()
    with server.client() as client:
        assert client.get("/api/cases", headers=_bearer(token)).status_code == 200  # now cached
        time.sleep(max(0.0, issued + lifetime_s + 0.3 - time.monotonic()))
        refused = client.get("/api/cases", headers=_bearer(token))
    assert refused.status_code == 401, refused.text
    assert _error(refused) == ("Authorization", "unknown, expired or revoked token or key")


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(data))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    return data


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_cli_devices(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "device", "add", "van-9", "--camera", "cam-9"]) == 0
    first_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["-q", "device", "add", "van-9"]) == 1
    err = capsys.readouterr().err
    assert "name: device 'van-9' already exists" in err and "gridpatrol device rotate van-9" in err

    assert main(["-q", "device", "rotate", "van-9"]) == 0
    out = capsys.readouterr().out
    new_key = out.strip().splitlines()[-1]
    assert new_key.startswith("gpd_") and new_key != first_key and "old key no longer works" in out

    assert main(["-q", "device", "revoke", "van-9"]) == 0
    assert "device van-9 revoked" in capsys.readouterr().out
    assert main(["-q", "device", "revoke", "van-9"]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert main(["-q", "device", "revoke", "van-404"]) == 1
    assert "gridpatrol device: error: name: no device 'van-404'" in capsys.readouterr().err

    assert main(["-q", "device", "list"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ["NAME", "CAMERA", "CREATED"] and "REVOKED" in header
    assert row.split()[:2] == ["van-9", "cam-9"] and row.split()[-1] != "-"  # revoked at hh:mm

    assert main(["-q", "device", "rotate", "van-9"]) == 0
    assert "it was revoked; it is active again" in capsys.readouterr().out
    assert main(["-q", "device", "list"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].endswith("-")  # not revoked


def test_cli_users(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.services import Services
    from api.settings import Settings

    _stdin(monkeypatch, "first-password\n")
    assert main(["-q", "user", "add", "root", "--role", "admin", "--password-stdin"]) == 0
    _stdin(monkeypatch, "alice-password\n")
    assert main(["-q", "user", "add", "alice", "--role", "operator", "--password-stdin"]) == 0
    capsys.readouterr()

    assert main(["-q", "user", "deactivate", "root"]) == 1
    assert "username: 'root' is the last active admin" in capsys.readouterr().err
    assert main(["-q", "user", "deactivate", "alice"]) == 0
    assert "alice deactivated" in capsys.readouterr().out
    assert main(["-q", "user", "deactivate", "alice"]) == 0
    assert "already deactivated" in capsys.readouterr().out
    assert main(["-q", "user", "deactivate", "nobody"]) == 1
    assert "gridpatrol user: error: username: no user 'nobody'" in capsys.readouterr().err

    assert main(["-q", "user", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["USERNAME", "ROLE", "TEAM", "ACTIVE"]
    assert lines[1].split()[:4] == ["alice", "operator", "-", "no"]
    assert lines[2].split()[:4] == ["root", "admin", "-", "yes"]

    services = Services.build(Settings.from_env())
    try:
        with pytest.raises(auth.LoginFailed):
            tokens.login(services.factory, username="alice", password="alice-password", ttl_h=1)
        assert main(["-q", "user", "activate", "alice"]) == 0
        assert "alice is active again" in capsys.readouterr().out
        assert tokens.login(services.factory, username="alice", password="alice-password", ttl_h=1)

        _stdin(monkeypatch, "short\n")
        assert main(["-q", "user", "passwd", "alice", "--password-stdin"]) == 1
        assert "password: at least 8 characters" in capsys.readouterr().err
        _stdin(monkeypatch, " " * 12 + "\n")
        assert main(["-q", "user", "passwd", "alice", "--password-stdin"]) == 1
        assert "password: not only spaces" in capsys.readouterr().err
        _stdin(monkeypatch, "second-password\n")
        assert main(["-q", "user", "passwd", "alice", "--password-stdin"]) == 0
        assert "password of user alice set" in capsys.readouterr().out
        with pytest.raises(auth.LoginFailed):
            tokens.login(services.factory, username="alice", password="alice-password", ttl_h=1)
        assert tokens.login(services.factory, username="alice", password="second-password", ttl_h=1)
        _stdin(monkeypatch, "")
        monkeypatch.delenv("GRIDPATROL_PASSWORD", raising=False)
        assert main(["-q", "user", "passwd", "nobody", "--password-stdin"]) == 1
        assert "username: no user 'nobody'" in capsys.readouterr().err
    finally:
        services.close()


def test_cli_user_set_changes_a_role_and_team(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gridpatrol user set`: the rules of `user add`, errors naming the field; names in any case, as
    login takes them, for every `user` command that names one."""
    _stdin(monkeypatch, "first-password\n")
    assert main(["-q", "user", "add", "root", "--role", "admin", "--password-stdin"]) == 0
    _stdin(monkeypatch, "alice-password\n")
    assert main(["-q", "user", "add", "alice", "--role", "operator", "--password-stdin"]) == 0
    capsys.readouterr()

    assert main(["-q", "user", "set", "Alice", "--role", "enforcement", "--team", " team-x "]) == 0
    out = capsys.readouterr().out
    assert "user alice is now enforcement, team team-x (from their next request" in out
    assert "note: no grid cell belongs to team 'team-x' yet" in out
    assert main(["-q", "user", "set", "alice", "--team", "team-x"]) == 0
    assert "user alice is already enforcement, team team-x" in capsys.readouterr().out
    for argv, error in (
        (["alice", "--team", ""], "team: an enforcement user must belong to a team"),
        (["alice", "--role", "viewer", "--team", "t\x01"], "team: at most 64 characters, no control"),
        (["ROOT", "--role", "viewer"], "role: 'root' is the last active admin"),
        (["nobody", "--role", "viewer"], "username: no user 'nobody'"),
        (["alice"], "nothing to change: give --role, --team or both"),
    ):
        assert main(["-q", "user", "set", *argv]) == 1, argv
        assert f"gridpatrol user: error: {error}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["-q", "user", "set", "alice", "--role", "chief"])
    assert "invalid choice: 'chief'" in capsys.readouterr().err

    assert main(["-q", "user", "set", "alice", "--role", "admin", "--team", ""]) == 0
    assert "user alice is now admin, no team" in capsys.readouterr().out
    assert main(["-q", "user", "set", "root", "--role", "viewer"]) == 0  # alice is an admin now
    assert main(["-q", "user", "deactivate", "ALICE"]) == 1
    assert "username: 'alice' is the last active admin" in capsys.readouterr().err
    _stdin(monkeypatch, "second-password\n")
    assert main(["-q", "user", "passwd", "ROOT", "--password-stdin"]) == 0
    assert "password of user root set" in capsys.readouterr().out
    assert main(["-q", "user", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[:4] == ["alice", "admin", "-", "yes"]
    assert lines[2].split()[:4] == ["root", "viewer", "-", "yes"]


def test_cli_user_set_reaches_a_running_server_at_once(
    make_server, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    server = make_server(db_url, run_webhooks=False)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(server.services.settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    with server.client("viewer") as viewer:
        assert viewer.get("/api/users").status_code == 403
        assert main(["-q", "user", "set", "viewer", "--role", "admin"]) == 0
        assert viewer.get("/api/users").status_code == 200


def test_cli_revoke_reaches_a_running_server_at_once(
    make_server, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The CLI is another process with its own cache: the epoch file in the shared data folder
    tells the server's cache that its entry for the key is stale."""
    server = make_server(db_url, run_webhooks=False)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(server.services.settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    with server.client("device") as device, server.client("viewer") as viewer:
        assert device.get("/api/jobs/999").status_code == 404
        assert viewer.get("/api/me").status_code == 200
        assert main(["-q", "device", "revoke", "van-1"]) == 0
        assert device.get("/api/jobs/999").status_code == 401
        assert viewer.get("/api/me").status_code == 200
        assert main(["-q", "user", "deactivate", "viewer"]) == 0
        assert viewer.get("/api/me").status_code == 401


@pytest.mark.parametrize("name", [".", "..", ".x", "_x", "a b", "x" * 65])
def test_names_that_cannot_stand_in_a_url_path_are_refused(
    cli_env: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(["-q", "device", "add", name]) == 1
    assert "name: 1-64 letters, digits or _ . @ -, starting with a letter or digit" in capsys.readouterr().err
    assert main(["-q", "device", "add", "van.9@depot_2-b"]) == 0  # letters, digits and _ . @ - inside


def test_a_team_is_trimmed_and_an_empty_one_refused_on_every_path(
    server: LiveServer, cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """API and CLI agree with the page: spaces around a team are dropped (a team with them matches no
    grid cell), a team of spaces or with a control character is refused; a team that no grid cell names
    is added with a notice that the user will see no case (team-ziyang is one of the server's grid)."""
    with server.client("admin") as admin:

        def add(username: str, team: str) -> object:
            body = {"username": username, "password": "goodpass123", "role": "enforcement", "team": team}
            return admin.post("/api/users", json=body)

        padded = add("padded", " team-ziyang ")
        assert padded.status_code == 201, padded.text  # type: ignore[attr-defined]
        assert padded.json()["team"] == "team-ziyang" and padded.json()["notice"] is None  # type: ignore[attr-defined]
        for username, team in (("blank", "   "), ("nul", "team\u0000x")):
            refused = add(username, team)
            assert refused.status_code == 422, refused.text  # type: ignore[attr-defined]
            assert _error(refused)[0] == "team"
        void = add("void", "team-void")
        assert void.status_code == 201 and "no grid cell belongs to team 'team-void'" in void.json()["notice"]  # type: ignore[attr-defined]
        assert admin.get("/api/users").status_code == 200

    _stdin(monkeypatch, "goodpass123\n")
    assert (
        main(["-q", "user", "add", "cli-blank", "--role", "enforcement", "--team", "  ", "--password-stdin"])
        == 1
    )
    assert "team: an enforcement user must belong to a team" in capsys.readouterr().err
    _stdin(monkeypatch, "goodpass123\n")
    assert (
        main(
            [
                "-q",
                "user",
                "add",
                "cli-void",
                "--role",
                "enforcement",
                "--team",
                " team-x ",
                "--password-stdin",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "user cli-void (enforcement, team team-x) added" in out
    assert "note: no grid cell belongs to team 'team-x' yet" in out


def test_usernames_that_differ_only_in_case_are_one_account(server: LiveServer) -> None:
    with server.client("admin") as admin:
        body = {"username": "ADMIN", "password": "goodpass123", "role": "admin"}
        twin = admin.post("/api/users", json=body)
        assert twin.status_code == 409, twin.text
        assert _error(twin) == (
            "username",
            "'ADMIN' already exists as 'admin' (usernames must differ by more than case)",
        )
        assert [u["username"] for u in admin.get("/api/users").json()].count("admin") == 1


def test_login_finds_the_user_in_any_case_and_throttles_the_account_once(server: LiveServer) -> None:
    # a phone capitalises the first letter: 'Admin' is the account 'admin', on the API and the page
    token = _login(server, "Admin", "password-admin")
    assert token.status_code == 200, token.text
    with server.client() as me:
        assert me.get("/api/me", headers=_bearer(token.json()["access_token"])).json()["name"] == "admin"
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        found = re.search(r'name="login_csrf" value="([^"]+)"', browser.get("/login").text)
        assert found is not None
        form = {"username": "OPERATOR", "password": "password-operator", "login_csrf": found[1], "next": "/"}
        assert browser.post("/login", data=form).status_code == 303
    # one count per account, whatever the spelling: five wrong guesses spread over three spellings
    spellings = ["Admin", "ADMIN", "admin", "aDmin", "Admin"]
    assert [_login(server, name, "wrong-password").status_code for name in spellings] == [401] * MAX_FAILURES
    assert _login(server, "admin", "password-admin").status_code == 429
    assert _login(server, "ADMIN", "password-admin").status_code == 429
    assert _login(server, "viewer", "password-viewer").status_code == 200


def test_a_device_is_bound_to_a_camera_id_as_given_or_refused(
    server: LiveServer, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device's incidents are filed under its camera: bound to "cam-a " (a stray space) they went
    to no registered camera, past the team the camera sends its cases to."""
    with server.client("admin") as admin:
        for camera in ("demo-cam-01 ", " demo-cam-01", "摄像头1", "cam\n1", "cam a", ".."):
            refused = admin.post("/api/devices", json={"name": "van-2", "camera_id": camera})
            assert refused.status_code == 422, camera
            assert _error(refused)[0] == "camera_id"
        with server.services.factory() as session, pytest.raises(auth.AuthError, match="'cam-1 ' is no"):
            auth.create_device(session, name="van-2", camera_id="cam-1 ")
        assert admin.post("/api/devices", json={"name": "van-2", "camera_id": ""}).json()["camera_id"] is None
        made = admin.post("/api/devices", json={"name": "van-3", "camera_id": "site-a:cam_1.2"})
        assert made.status_code == 201 and made.json()["camera_id"] == "site-a:cam_1.2"
    assert main(["-q", "device", "add", "van-4", "--camera", "cam 1"]) == 1
    assert "camera_id: 'cam 1' is no camera id" in capsys.readouterr().err


def test_a_name_with_a_trailing_newline_is_refused_where_it_is_made(
    server: LiveServer, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pattern's `$` also matches before a final newline: "bob\\n" passed the name check of `gridpatrol
    user add` and `device add` (the API's pattern refused it), and was stored as a name no login types."""
    with server.services.factory() as session:
        with pytest.raises(auth.AuthError, match="username"):
            auth.create_user(session, username="bob\n", password="goodpass123", role="viewer")
        with pytest.raises(auth.AuthError, match="name"):
            auth.create_device(session, name="van-9\n")
    assert main(["-q", "device", "add", "van-9\n"]) == 1
    assert "name: 1-64 letters" in capsys.readouterr().err

"""A row edited outside the service into something its column cannot hold (SQLite keeps times as text,
which an edit of the file can make anything) is named, never a traceback or a 500: the case page shows
the custody check naming the entry, and a page or API answer that must read the damaged time is a 503
naming the value (probe findings, 2026-12-05)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import main
from tests.api.api_testkit import LiveServer, incident_json, post_incident


def test_a_garbled_time_is_named_on_the_pages_and_the_api(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("admin") as admin, server.client("admin") as api:
        chained = post_incident(device, incident_json("chained")).json()["case_id"]
        seen = post_incident(device, incident_json("seen", position=(30.2841, 120.1651))).json()["case_id"]
        with sqlite3.connect(sqlite_url.split("///", 1)[1]) as db:
            db.execute("UPDATE custody_entries SET at = 'garbage' WHERE case_id = ?", (chained,))
            db.execute("UPDATE cases SET last_seen = 'junk' WHERE id = ?", (seen,))
        db.close()

        page = admin.get(f"/cases/{chained}")
        assert page.status_code == 200, page.text[:300]
        assert "entry altered (its time &#39;garbage&#39; is no time)" in page.text

        damaged = admin.get(f"/cases/{seen}")
        assert damaged.status_code == 503 and "text/html" in damaged.headers["content-type"]
        assert "Damaged record" in damaged.text and "a stored time reads &#39;junk&#39;" in damaged.text

        answer = api.get(f"/api/cases/{seen}")
        assert answer.status_code == 503, answer.text
        assert answer.json()["errors"][0]["field"] == "database"
        assert "a stored time reads 'junk', which is no time" in answer.json()["detail"]
        assert api.get("/api/cases").status_code == 503  # the list holds it too: named, not a 500
        assert api.get(f"/api/cases/{chained}").status_code == 200  # the others still read


def test_a_command_reading_a_garbled_time_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert (
        main(["-q", "user", "add", "alice", "--role", "operator", "--password-stdin", "--database-url", url])
        == 0
    )
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("UPDATE users SET created_at = 'yesterday' WHERE username = 'alice'")
    db.close()
    assert main(["-q", "user", "list", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "gridpatrol user: error: database: a stored time reads 'yesterday', which is no time" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

"""A row edited outside the service into something its column cannot hold (SQLite keeps times as text,
which an edit of the file can make anything) is named, never a traceback or a 500: the case page shows
the custody check naming the entry, and a page or API answer that must read the damaged time is a 503
naming the value (probe findings, 2026-12-05). A review label whose detail is not what the service
writes leaves its frame without a box editor (a line saying why, a warning naming the row), a box
correction on it a 503 naming the row, and the training-set export without that frame, warned."""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import main
from tests.api.api_testkit import LiveServer, incident_json, post_incident
from tests.api.test_review_labels import BUS_BOX, LAT, LON, SITE, TIE, _box, _export, _frames, _post


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


def test_a_damaged_review_label_leaves_its_frame_unlabelled_never_a_500(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    frames = _frames()
    with server.client("admin") as admin:
        damaged, sound = (
            _post(
                admin,
                f"d-label-{i}",
                frames[name],
                camera=f"cam-{i}",
                kind="bus",
                box=BUS_BOX,
                position=(LAT + i * 0.01, LON),
                when="2026-11-20T09:00:00+08:00",
            )  # fmt: skip
            for i, name in enumerate(("bus", "bus_flipped"))
        )
    with server.client("operator") as op:
        for case_id in (damaged, sound):
            assert op.post(f"/api/cases/{case_id}/transitions", json={"to": "filed"}).status_code == 200
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as db:
        (label,) = db.execute("SELECT id FROM review_labels WHERE case_id = ?", (damaged,)).fetchone()
        db.execute("UPDATE review_labels SET detail = '{\"category\": oops' WHERE id = ?", (label,))
    db.close()

    with server.browser("operator") as page, caplog.at_level(logging.WARNING):
        html = page.get(f"/cases/{damaged}")
        assert html.status_code == 200, html.text[:300]
        assert f"its labels cannot be read (review label {label} is damaged)" in html.text
        assert 'class="box-editor"' not in html.text
        assert f"review label {label} (case {damaged}," in caplog.text and "is not JSON" in caplog.text
        page.cookies.set("gp_lang", "zh-CN")
        assert f"（审核标注 {label} 已损坏）" in page.get(f"/cases/{damaged}").text
        assert 'class="box-editor"' in page.get(f"/cases/{sound}").text  # the others still open

        answer = page.post(f"/api/cases/{damaged}/boxes", json={"boxes": [_box(TIE, "person", "add")]})
        assert answer.status_code == 503 and answer.json()["errors"][0]["field"] == "database", answer.text
        assert f"review label {label} (case {damaged}," in answer.json()["detail"]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _export(server, tmp_path / "out", monkeypatch, "--since", "2026-01-01") == 0
    assert f"review label {label}" in caplog.text and "is left out" in caplog.text
    out = capsys.readouterr().out
    assert "frames left out, a review label cannot be read (warned above): 1" in out
    assert len(list((tmp_path / "out").rglob("*.txt"))) == 1  # the sound frame's labels, exported

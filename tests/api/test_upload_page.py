"""The /upload page as a patrol crew uses it, in a real browser over a real server whose worker runs the
scripted pipeline (probe findings, 2026-12-06): a job's warning or error read on the recent uploads list
by someone coming back to the page, the browser asking before a page mid-upload is left, footage the
service had before said so above the job's outcome, the start time read at the camera's offset whatever
the browser's time zone, a file of another type named in the page's language, and each done upload's
cases one link away."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.api.api_testkit import LiveServer, wait_job
from tests.api.test_gps_tracks import pipeline, still_video, worker_server
from tests.detect.rule_fixtures import make_config

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
START = "2026-11-20T09:00:00+08:00"
FINISHED = "body[data-upload-state=done], body[data-upload-state=failed]"


def logger_csv(day: str) -> str:
    """A track as the GPSLogger Android app exports it (its own columns; speed in m/s, bearing), through
    DEMO-QINGBO-03 from 09:00:00 to 09:00:20 (UTC+8) on `day`."""
    header = (
        "time,lat,lon,elevation,accuracy,bearing,speed,satellites,provider,hdop,vdop,pdop,geoidheight,"
        "ageofdgpsdata,dgpsid,activity,battery,annotation,timestamp_ms,time_offset,distance,"
        "starttimestamp_ms,profile_name,battery_charging"
    )
    tail = ",12.0,4.0,45.0,8.3,9,gps,,,,,,,,88,,,,{},,Default Profile,false"
    rows = [
        f"{day}T01:00:00.000Z,30.2640,120.1480" + tail.format("0.0"),
        f"{day}T01:00:20.000Z,30.2680,120.1520" + tail.format("500.0"),
    ]
    return "\n".join([header, *rows]) + "\n"


@pytest.fixture
def server(make_server: Any, sqlite_url: str) -> LiveServer:
    return worker_server(make_server, sqlite_url, pipeline)


@contextmanager
def upload_page(
    server: LiveServer, who: str = "operator", *, timezone_id: str = "Asia/Shanghai", lang: str = "zh-CN"
) -> Iterator[tuple[Any, list[str]]]:
    """/upload in Chinese (or `lang`), in a browser on UTC+8 (or `timezone_id`)."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(timezone_id=timezone_id)
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens[who], "url": server.url},
                    {"name": "gp_lang", "value": lang, "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "/upload")
            page.wait_for_selector("body[data-upload-state=ready]")
            yield page, problems
        finally:
            browser.close()


def _post(
    client: Any, video: bytes, name: str, track: tuple[str, str] | None = None, start: str = START
) -> dict[str, Any]:
    files: dict[str, Any] = {"file": (name, video, "video/x-msvideo")}
    if track:
        files["track"] = (track[0], track[1].encode(), "text/csv")
    r = client.post("/api/uploads", files=files, data={"start_time": start})
    assert r.status_code in (200, 201), r.text
    return wait_job(client, r.json()["id"])


@pytest.mark.slow
@pytest.mark.browser
def test_the_recent_uploads_list_shows_a_jobs_warning_and_error(server: LiveServer, tmp_path: Path) -> None:
    """A crew member back on /upload (or a colleague) found their footage listed as 已完成 (done) and
    nothing more: that its GPS track was another day's and placed none of its frames (the job's warning,
    with the way out: send it again with the right track) was shown only to the page that had sent it,
    while it waited. A failed job said 失败 without why. Each now opens to the job's own words."""
    with server.client("operator") as op:
        yesterday = ("昨天.csv", logger_csv("2026-11-19"))
        warned = _post(op, still_video(tmp_path / "a.avi", 1), "巡逻 第一段.avi", yesterday)
        failed = _post(op, still_video(tmp_path / "b.avi", 2), "b.avi", ("bad.csv", "time,lat,lon\n1,2\n"))
        assert warned["status"] == "done" and "placed none of the footage's frames" in warned["warning"]
        assert failed["status"] == "failed" and failed["error"]
        listed = {u["job_id"]: u for u in op.get("/api/uploads").json()["items"]}
    assert listed[warned["id"]]["job_warning"] == warned["warning"]
    assert listed[warned["id"]]["job_error"] is None
    assert listed[failed["id"]]["job_error"] == failed["error"]

    with upload_page(server) as (page, problems):
        rows = page.locator("#recent-uploads tbody tr")
        page.wait_for_selector(f"#recent-uploads tr[data-upload='{warned['upload']['id']}']")
        row = rows.filter(has_text="巡逻 第一段.avi")
        assert row.locator("summary").inner_text() == "已完成 · 有警告"
        assert not row.locator("details p").is_visible()
        row.locator("summary").click()
        assert row.locator("details p").inner_text() == warned["warning"]
        row = rows.filter(has_text="bad.csv")
        assert row.locator("summary").inner_text() == "失败 · 查看原因"
        row.locator("summary").click()
        assert row.locator("details p").inner_text() == failed["error"]
    assert problems == []


@pytest.mark.slow
@pytest.mark.browser
def test_leaving_the_page_mid_upload_is_asked_first(server: LiveServer, tmp_path: Path) -> None:
    """A crew member who tapped another page (or reload) while the footage was still going up lost the
    upload without a word. The browser now asks first; staying lets the upload finish, and once it is
    sent the page is left without asking."""
    footage = tmp_path / "dashcam.avi"
    footage.write_bytes(still_video(tmp_path / "a.avi", 3))
    held: list[Any] = []
    with upload_page(server) as (page, problems):
        dialogs: list[str] = []

        def answer(dialog: Any) -> None:
            dialogs.append(dialog.type)
            dialog.dismiss()  # stay on the page

        page.on("dialog", answer)
        # the upload's request held, as on a slow mobile network
        page.route(
            "**/api/uploads",
            lambda route: held.append(route) if route.request.method == "POST" else route.continue_(),
        )
        page.set_input_files("#file", str(footage))
        page.fill("#start_time", "2026-11-20T09:00:00")
        page.click("#upload-submit")
        page.wait_for_selector("body[data-upload-state=sending]")
        for _ in range(100):  # the route's handler runs while the page is waited on
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the upload was not sent"
        page.click("nav a[href='/map']", no_wait_after=True)
        page.wait_for_timeout(500)
        assert dialogs == ["beforeunload"]
        assert page.url.endswith("/upload")
        held[0].continue_()
        page.wait_for_selector(FINISHED, timeout=30_000)
        assert page.get_attribute("body", "data-upload-state") == "done"
        page.click("nav a[href='/map']")
        page.wait_for_url("**/map")
        assert dialogs == ["beforeunload"]
    assert problems == []


def _send(page: Any, footage: Path, track: Path | None = None) -> str:
    page.set_input_files("#file", str(footage))
    if track:
        page.set_input_files("#track", str(track))
    page.fill("#start_time", "2026-11-20T09:00:00")
    page.click("#upload-submit")
    page.wait_for_selector(FINISHED, timeout=30_000)
    return str(page.inner_text("#upload-message"))


@pytest.mark.slow
@pytest.mark.browser
def test_footage_sent_before_is_said_so_above_the_jobs_outcome(server: LiveServer, tmp_path: Path) -> None:
    """A second crew member who sent footage a colleague had already sent read only "检测完成，发现 1 起
    事件" at once, as if their own upload (with their camera and start time) had just been analysed: the
    page's "uploaded before" note was written over when the earlier job was already done. A resend that
    corrected the track was called the earlier detection too. The note now stays above the outcome."""
    footage = tmp_path / "dashcam.avi"
    footage.write_bytes(still_video(tmp_path / "a.avi", 4))
    other = tmp_path / "other.avi"
    other.write_bytes(still_video(tmp_path / "b.avi", 5))
    right = tmp_path / "GPSLogger_20261120.csv"
    right.write_text(logger_csv("2026-11-20"))
    with server.client("admin") as colleague:
        first = _post(colleague, footage.read_bytes(), "dashcam.avi")
        wrong = _post(colleague, other.read_bytes(), "other.avi", ("昨天.csv", logger_csv("2026-11-19")))
    assert first["status"] == "done" and wrong["warning"]
    with upload_page(server) as (page, problems):
        said = _send(page, footage)
        assert said == (
            f"此视频之前已上传过（任务 #{first['id']}），"
            "下面是那次检测的结果（按首次上传时的摄像头和开始时间）。\n"
            f"检测完成，发现 {first['incidents']} 起事件。"
        ), said
        said = _send(page, other, right)
        job_id = int(page.get_attribute("#upload-status", "data-job-id") or 0)
        assert job_id > wrong["id"]
        corrected = f"此视频之前已上传过，现按更正后的信息重新检测（第 1 版，任务 #{job_id}）。"
        assert said.startswith(corrected + "\n检测完成"), said
    assert problems == []


@pytest.fixture
def two_zone_server(make_server: Any, sqlite_url: str) -> LiveServer:
    """As `server`, its site config with two cameras: demo-cam-01 at UTC+8, kolkata-cam at UTC+5:30."""
    config = make_config()
    camera = config.cameras[0]
    cameras = [
        camera.model_copy(update={"id": "demo-cam-01", "timezone": "Asia/Shanghai"}),
        camera.model_copy(update={"id": "kolkata-cam", "timezone": "Asia/Kolkata"}),
    ]
    config = config.model_copy(update={"cameras": cameras})
    return make_server(  # type: ignore[no-any-return]
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        pipeline=pipeline,
        config_loader=lambda: config,
        settings={"worker_poll_s": 0.05},
    )


@pytest.mark.slow
@pytest.mark.browser
def test_the_start_time_is_the_cameras_clock_whatever_the_browsers_time_zone(
    two_zone_server: LiveServer, tmp_path: Path
) -> None:
    """An office PC set to UTC sent the camera's 09:00 (its burnt-in time, at UTC+8) as 09:00Z: 8 hours
    off, so the GPS track placed none of the footage's frames. The field is now the camera's clock, read
    at the chosen camera's offset (said beside it, changing with the camera), whatever the browser's."""
    server = two_zone_server
    footage = tmp_path / "dashcam.avi"
    footage.write_bytes(still_video(tmp_path / "a.avi", 6))
    track = tmp_path / "GPSLogger_20261120.csv"
    track.write_text(logger_csv("2026-11-20"))
    with upload_page(server, timezone_id="UTC") as (page, problems):
        page.fill("#camera_id", "demo-cam-01")
        said = _send(page, footage, track)  # 2026-11-20T09:00:00 on the camera's clock
        job_id = int(page.get_attribute("#upload-status", "data-job-id") or 0)
        with server.client("operator") as op:
            job = op.get(f"/api/jobs/{job_id}").json()
            listed = {u["job_id"]: u for u in op.get("/api/uploads").json()["items"]}
        assert listed[job_id]["start_time"] == "2026-11-20T01:00:00Z", said  # 09:00 at UTC+8, not 09:00Z
        assert listed[job_id]["camera_id"] == "demo-cam-01"
        assert job["status"] == "done" and job["incidents"] >= 1, job
        assert "placed none" not in (job["warning"] or ""), job
        # the offset it was read at, beside the field, following the camera typed
        assert page.inner_text("#start-zone") == "摄像头时间（UTC+08:00）"
        page.fill("#camera_id", "kolkata-cam")
        assert page.inner_text("#start-zone") == "摄像头时间（UTC+05:30）"
        # no camera, and two in the config (no default): the site's offset, as for one it does not know
        page.fill("#camera_id", "")
        assert page.inner_text("#start-zone") == "摄像头时间（UTC+08:00）"
        page.fill("#camera_id", "kolkata-cam")
        other = tmp_path / "kolkata.avi"
        other.write_bytes(still_video(tmp_path / "b.avi", 9))
        _send(page, other)  # 09:00 on a camera at UTC+5:30
    assert problems == []
    with server.client("operator") as op:
        listed = {u["filename"]: u for u in op.get("/api/uploads").json()["items"]}
    assert listed["kolkata.avi"]["start_time"] == "2026-11-20T03:30:00Z"
    assert listed["dashcam.avi"]["start_time"] == "2026-11-20T01:00:00Z"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("zh-CN", "上传被拒绝：巡查报告.pdf 不是可读取的视频：请选择视频文件（"),
        (
            "en",
            "The upload was refused: 巡查报告.pdf is not footage the service can read: choose a video file (",
        ),
    ],
)
def test_a_file_that_is_no_footage_is_named_in_the_pages_language(
    server: LiveServer, tmp_path: Path, lang: str, said: str
) -> None:
    """A PDF (or a picture) sent as footage got the API's English 415, which named no file, on a
    Chinese page. The page now says it in its own language, naming the file; the API names it too."""
    pdf = tmp_path / "巡查报告.pdf"
    pdf.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    with upload_page(server, lang=lang) as (page, problems):
        page.set_input_files("#file", str(pdf))
        page.click("#upload-submit")
        page.wait_for_selector("body[data-upload-state=refused]")
        message = page.inner_text("#upload-message")
        assert message.startswith(said), message
        assert "not a video container" not in message
        assert "error" in (page.get_attribute("#upload-message", "class") or "")
    assert [p for p in problems if "415" not in p] == []  # the browser logs the refused request itself
    with server.client("operator") as op:
        r = op.post("/api/uploads", files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 415
    assert r.json()["errors"][0]["reason"].startswith("巡查报告.pdf: not a video container we can read")


@pytest.mark.slow
@pytest.mark.browser
def test_a_done_upload_links_to_the_cases_its_job_filed(server: LiveServer, tmp_path: Path) -> None:
    """ "Recent uploads" listed ten rows with no way to the cases an upload's job filed. Each done upload
    now links to the case list filtered to them (GET /api/cases?upload=, /cases?upload=), and "more"
    lists up to 50."""
    with server.client("operator") as op:
        done = _post(op, still_video(tmp_path / "a.avi", 7), "a.avi", ("t.csv", logger_csv("2026-11-20")))
        # another day's patrol past the same place: a case of its own (beyond the merge window)
        other_day = ("t.csv", logger_csv("2026-11-25"))
        other = _post(op, still_video(tmp_path / "b.avi", 8), "b.avi", other_day, "2026-11-25T09:00:00+08:00")
        assert done["status"] == "done" and done["incidents"] >= 1, done
        upload_id = done["upload"]["id"]
        mine = op.get("/api/cases", params={"upload": upload_id}).json()
        assert mine["total"] == done["incidents"], mine
        filed = {c["id"] for c in mine["items"]}
        theirs = {
            c["id"] for c in op.get("/api/cases", params={"upload": other["upload"]["id"]}).json()["items"]
        }
        assert theirs and not filed & theirs
        assert op.get("/api/cases", params={"upload": 999_999}).json()["total"] == 0
        bad = op.get("/api/cases", params={"upload": "abc"})
        assert bad.status_code == 422 and "upload" in bad.text
        for seed in range(9):  # eleven uploads in all: one more than the list shows at first
            r = op.post(
                "/api/uploads",
                files={
                    "file": (
                        f"c{seed}.avi",
                        still_video(tmp_path / f"c{seed}.avi", 20 + seed, 2),
                        "video/x-msvideo",
                    )
                },
            )
            assert r.status_code == 201, r.text
    with upload_page(server) as (page, problems):
        row = page.locator(f"#recent-uploads tr[data-upload='{upload_id}']")
        more = page.locator("#recent-more")
        page.wait_for_selector("#recent-uploads tbody tr[data-upload]")
        assert page.locator("#recent-uploads tbody tr").count() == 10 and more.is_visible()
        assert row.count() == 0  # the oldest but one: not among the ten newest
        more.click()
        row.wait_for()
        assert page.locator("#recent-uploads tbody tr").count() == 11 and not more.is_visible()
        link = row.locator("a.upload-cases")
        assert link.inner_text() == "查看案件"
        assert link.get_attribute("href") == f"/cases?upload={upload_id}&superseded=false"
        link.click()
        page.wait_for_url(f"**/cases?upload={upload_id}&superseded=false")
        assert page.get_attribute("#case-total", "data-count") == str(done["incidents"])
        assert page.inner_text("#filter-upload").startswith(f"仅显示上传 #{upload_id} 产生的案件。")
        shown = {
            int(a.split("/")[-1])
            for a in page.eval_on_selector_all(
                "#case-table a[href^='/cases/']", "links => links.map(a => a.getAttribute('href'))"
            )
        }
        assert shown == filed
        page.goto(server.url + "/cases?upload=abc")
        assert "上传" in page.inner_text("#filter-problems")
    assert problems == []

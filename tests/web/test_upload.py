"""The upload page in a real browser: real footage (the shared dashcam clip) sent through the page with
upload progress, its job run by the real model and watched to the end, the cases a job produced,
files dropped on the drop zone sorted into footage and track, and a refused upload showing the API's
reason."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from tests.web.conftest import SHARED, Site

CLIP = SHARED / "footage" / "highway-dashcam-1.mp4"
DONE_OR_FAILED = "body[data-upload-state=done], body[data-upload-state=failed]"


def _page(open_page: Any, username: str, **kwargs: Any) -> Any:
    watched = open_page(**kwargs)
    watched.login(username)
    return watched


def fresh_copy(tmp_path: Path, tag: str) -> Path:
    """The shared clip with an MP4 `free` box appended: the same real footage, but bytes (a SHA-256)
    the demo has not uploaded, so the page's upload makes a new job that runs the real model."""
    padding = f"gridpatrol web test {tag}".encode()
    path = tmp_path / f"patrol-{tag}.mp4"
    path.write_bytes(CLIP.read_bytes() + struct.pack(">I", 8 + len(padding)) + b"free" + padding)
    return path


DROP_BOTH = """() => {
  const files = new DataTransfer();
  files.items.add(new File(['<?xml version="1.0"?><gpx version="1.1"></gpx>'], "van.gpx",
                           { type: "application/gpx+xml" }));
  const head = new Uint8Array([0, 0, 0, 24, 102, 116, 121, 112]);
  files.items.add(new File([head], "clip.mp4", { type: "video/mp4" }));
  files.items.add(new File(["hello"], "notes.docx", { type: "application/msword" }));
  return files;
}"""


SHOW_JOB_CASES = """async (jobId) => {
  const response = await fetch(`/upload/jobs/${jobId}/cases`);
  document.getElementById("upload-status").hidden = false;
  document.getElementById("job-cases").innerHTML = await response.text();
}"""


def test_real_footage_uploaded_through_the_page_runs_its_job_to_the_end(
    open_page: Any, site: Site, tmp_path: Path
) -> None:
    page = _page(open_page, "op1", label="op1")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    assert p.inner_text("#file-name") == "未选择视频"

    # the drop zone: a track and a video dropped together land in their own inputs; the rest is named
    p.dispatch_event("#dropzone", "drop", {"dataTransfer": p.evaluate_handle(DROP_BOTH)})
    assert p.inner_text("#file-name").startswith("clip.mp4")
    assert p.inner_text("#track-name").startswith("van.gpx")
    assert "notes.docx" in p.inner_text("#flash")
    assert p.evaluate("document.getElementById('track').files[0].name") == "van.gpx"
    p.click("#track-clear")
    assert p.inner_text("#track-name") == "未选择轨迹" and p.is_hidden("#track-clear")

    footage = fresh_copy(tmp_path, "op1")
    p.set_input_files("#file", str(footage))
    assert p.inner_text("#file-name").startswith(footage.name)
    p.fill("#camera_id", "patrol-01")
    p.fill("#start_time", "2026-11-20T09:00:00")
    p.click("#upload-submit")
    p.wait_for_selector("body[data-upload-state=job]", timeout=60_000)
    assert p.get_attribute("#send-bar", "value") == "1"
    assert p.inner_text("#send-text") == "服务器已接收"
    page.shot("job")
    p.wait_for_selector(DONE_OR_FAILED, timeout=600_000)
    page.shot("done")

    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    job = site.api("op1").get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "done", job
    assert job["upload"]["size"] == footage.stat().st_size and job["upload"]["camera_id"] == "patrol-01"
    assert p.get_attribute("body", "data-upload-state") == "done"
    assert p.get_attribute("#upload-status", "data-job-status") == "done"
    assert p.evaluate("document.getElementById('job-bar').value") == 1
    assert p.inner_text("#job-text").startswith("已完成 · 100%")
    assert p.inner_text("#upload-message") == f"检测完成，发现 {job['incidents']} 起事件。"
    if job["incidents"] == 0:  # moving traffic only: the clip's true negative
        assert p.inner_text("#job-cases") == "这段视频没有产生案件。"
    else:
        links = p.locator("#job-cases li a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert links and all(link.startswith("/cases/") for link in links)
    newest = p.locator("#recent-uploads tbody tr").first
    assert newest.get_attribute("data-upload") == str(job["upload"]["id"])
    assert footage.name in newest.inner_text() and "已完成" in newest.inner_text()

    # the same footage again: the page says so and shows that job, finished
    p.set_input_files("#file", str(footage))
    p.click("#upload-submit")
    p.wait_for_selector(f"#upload-status[data-job-id='{job_id}'][data-job-status=done]")
    p.wait_for_selector("body[data-upload-state=done]")
    said = p.inner_text("#upload-message")
    assert said.startswith(f"此视频之前已上传过（任务 #{job_id}）") and "\n检测完成" in said, said


def test_the_cases_of_a_job_are_listed_with_links(open_page: Any, site: Site) -> None:
    """The demo's fixed camera at the collection point (its second job) produced the parked-car case;
    its dashcam (the first) none. The fragment is put in place as upload.js does when a job ends."""
    case = next(
        c for c in site.api("op1").get("/api/cases").json()["items"] if c["camera_id"] == "demo-cam-01"
    )
    page = _page(open_page, "op1", label="fragment")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    p.evaluate(SHOW_JOB_CASES, 2)
    p.wait_for_selector("#job-cases img.job-crop")
    item = p.locator(f"#job-cases li[data-case-id='{case['id']}']")
    assert item.locator("a").get_attribute("href") == f"/cases/{case['id']}"
    assert case["number"] in item.inner_text() and "乱停乱放" in item.inner_text()
    assert p.locator("#job-cases li").count() == 1
    assert p.evaluate("document.querySelector('#job-cases img.job-crop').naturalWidth") > 0
    page.shot("cases")
    p.evaluate(SHOW_JOB_CASES, 1)
    p.wait_for_selector("#job-cases .job-cases-none")
    assert p.inner_text("#job-cases") == "这段视频没有产生案件。"


def test_a_refused_upload_shows_the_apis_reason(open_page: Any, site: Site, tmp_path: Path) -> None:
    page = _page(open_page, "op2", label="refused")
    page.allowed_statuses.add(415)
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    p.click("#upload-submit")  # nothing chosen: said on the page, nothing sent
    assert p.inner_text("#flash") == "请先选择视频文件。" and p.is_hidden("#upload-status")

    fake = tmp_path / "meeting-notes.mp4"
    fake.write_text("minutes of the street committee, not footage\n")
    p.set_input_files("#file", str(fake))
    p.click("#upload-submit")
    p.wait_for_selector("body[data-upload-state=refused]")
    message = p.inner_text("#upload-message")
    assert message.startswith("上传被拒绝：meeting-notes.mp4 不是可读取的视频"), message
    assert "error" in (p.get_attribute("#upload-message", "class") or "")
    assert p.is_hidden("#step-job") and p.is_enabled("#upload-submit")
    page.shot("refused")

    p.click("button[lang=en]")  # the English switch
    p.wait_for_selector("body[data-upload-state=ready]")
    assert p.inner_text("h1") == "Upload footage"
    p.set_input_files("#file", str(fake))
    p.click("#upload-submit")
    p.wait_for_selector("body[data-upload-state=refused]")
    assert p.inner_text("#upload-message").startswith(
        "The upload was refused: meeting-notes.mp4 is not footage the service can read"
    )
    page.shot("refused-en")


def test_a_failed_job_shows_its_error(open_page: Any, site: Site, tmp_path: Path) -> None:
    """Footage sent for a camera the site config does not have: the upload is taken, its job fails, and
    the page shows the job's own error."""
    page = _page(open_page, "op2", label="failed")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    footage = fresh_copy(tmp_path, "failed")
    p.set_input_files("#file", str(footage))
    p.fill("#camera_id", "camera-on-the-moon")
    p.click("#upload-submit")
    p.wait_for_selector(DONE_OR_FAILED, timeout=300_000)
    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    job = site.api("op2").get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "failed" and "camera-on-the-moon" in job["error"], job
    assert p.get_attribute("body", "data-upload-state") == "failed"
    assert p.inner_text("#upload-message") == f"检测失败：{job['error']}"
    assert p.inner_text("#job-text").startswith("失败")
    assert p.locator("#job-cases *").count() == 0
    page.shot("failed")

    # the same footage sent again for another camera (a corrected resend): Recent uploads marks the
    # upload with its revision; an upload as first sent carries no mark
    with footage.open("rb") as sent:
        corrected = site.api("op2").post(
            "/api/uploads", files={"file": (footage.name, sent, "video/mp4")}, data={"camera_id": "patrol-02"}
        )
    assert corrected.status_code == 200 and corrected.json()["upload"]["revision"] == 1, corrected.text
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    row = p.locator(f"#recent-uploads tbody tr[data-upload='{job['upload']['id']}']")
    row.locator(".badge.revision").wait_for()
    assert row.locator(".badge.revision").inner_text() == "已更正 · 第 1 版"
    assert footage.name in row.inner_text() and "patrol-02" in row.inner_text()
    assert p.locator("#recent-uploads tbody tr .badge.revision").count() == 1
    page.shot("corrected")


DROP_DASHCAM_LOG = """(name) => {
  const files = new DataTransfer();
  files.items.add(new File(["[1795219199700]$GPRMC,235959.00,A,3015.8400,N"], name));  // no type
  return files;
}"""


def test_a_dashcam_gps_log_is_offered_and_taken_as_the_track(open_page: Any) -> None:
    """BlackVue's .gps and a Novatek dashcam's .log were hidden by the track picker and, dropped, named
    as "neither footage nor a track"."""
    page = _page(open_page, "op2", label="dashcam-log")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    accepted = (p.get_attribute("#track", "accept") or "").split(",")
    assert {".gps", ".log", ".nmea", ".txt"} <= set(accepted), accepted
    for name in ("20261121_075959_NF.gps", "FILE0001.LOG"):
        p.dispatch_event("#dropzone", "drop", {"dataTransfer": p.evaluate_handle(DROP_DASHCAM_LOG, name)})
        assert p.inner_text("#track-name").startswith(name) and p.inner_text("#flash") == ""
        assert p.inner_text("#file-name") == "未选择视频"


def test_only_admins_and_operators_may_upload(open_page: Any) -> None:
    for username in ("viewer1", "ziyang1"):
        page = _page(open_page, username, label=username)
        page.allowed_statuses.add(403)
        response = page.goto("/upload")
        assert response is not None and response.status == 403
        assert "无权访问" in page.page.inner_text("main")
        assert page.page.locator("nav a[href='/upload']").count() == 0


def test_large_footage_goes_in_chunks_and_resumes_after_a_dropped_connection(
    open_page: Any, site: Site, tmp_path: Path
) -> None:
    """Footage over 8 MB goes through /api/upload-sessions in 4 MB chunks: the second chunk's connection
    is reset, and the page asks the server's offset after a backoff and goes on from there; the upload
    filed is the whole file, hashed by the page."""
    padding = b"gridpatrol chunked web test " * (9 * 1024**2 // 28)
    footage = tmp_path / "patrol-chunked.mp4"
    footage.write_bytes(CLIP.read_bytes() + struct.pack(">I", 8 + len(padding)) + b"free" + padding)
    assert footage.stat().st_size > 10 * 1024**2
    page = _page(open_page, "op1", label="chunked")
    p = page.page
    sent: list[str] = []
    p.on("request", lambda r: sent.append(f"{r.method} {r.url.removeprefix(site.base_url)}"))
    dropped: list[str] = []

    def drop_once(route: Any) -> None:
        if "offset=4194304" in route.request.url and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    p.route("**/api/upload-sessions/*?offset=*", drop_once)
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    p.set_input_files("#file", str(footage))
    p.click("#upload-submit")
    p.wait_for_selector("body[data-upload-state=retrying]", timeout=60_000)
    assert "连接中断" in p.inner_text("#send-text")
    p.wait_for_selector("body[data-upload-state=job]", timeout=120_000)
    assert p.inner_text("#send-text") == "服务器已接收"
    # the reset this test made, and chromium's console line for it
    made = {
        f"request failed: PATCH {dropped[0]}",
        "console error: Failed to load resource: net::ERR_CONNECTION_RESET",
    }
    page.problems[:] = [m for m in page.problems if not any(m.startswith(x) for x in made)]

    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    upload = site.api("op1").get(f"/api/jobs/{job_id}").json()["upload"]
    assert upload["size"] == footage.stat().st_size
    assert upload["sha256"] == hashlib.sha256(footage.read_bytes()).hexdigest()
    chunks = [line for line in sent if "/api/upload-sessions" in line]
    assert chunks[0] == "POST /api/upload-sessions", chunks
    opened = next(line for line in chunks if line.startswith("PATCH")).split()[1].split("?")[0]
    assert chunks[1:] == [
        f"PATCH {opened}?offset=0",
        f"PATCH {opened}?offset=4194304",  # reset
        f"GET {opened}",  # where the server stands
        f"PATCH {opened}?offset=4194304",
        f"PATCH {opened}?offset=8388608",
        f"POST {opened}/finish",
    ], chunks


def test_a_chunked_upload_waits_while_offline_and_goes_on_when_the_network_returns(
    open_page: Any, site: Site, tmp_path: Path
) -> None:
    padding = b"gridpatrol offline web test " * (9 * 1024**2 // 28)
    footage = tmp_path / "patrol-offline.mp4"
    footage.write_bytes(CLIP.read_bytes() + struct.pack(">I", 8 + len(padding)) + b"free" + padding)
    page = _page(open_page, "op2", label="offline")
    p = page.page
    held: list[Any] = []

    def hold_once(route: Any) -> None:
        if "offset=4194304" in route.request.url and not held:
            held.append(route)  # answered below, once the browser is offline
        else:
            route.continue_()

    p.route("**/api/upload-sessions/*?offset=*", hold_once)
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    p.set_input_files("#file", str(footage))
    p.click("#upload-submit")
    p.wait_for_function("() => document.getElementById('send-bar').value > 0.3", timeout=60_000)
    while not held:
        p.wait_for_timeout(50)
    p.context.set_offline(True)
    held[0].abort("internetdisconnected")
    p.wait_for_selector("body[data-upload-state=offline]", timeout=30_000)
    assert "网络已断开" in p.inner_text("#send-text")
    p.wait_for_timeout(1500)  # no backoff runs while offline: still waiting
    assert p.get_attribute("body", "data-upload-state") == "offline"
    p.context.set_offline(False)
    p.wait_for_selector("body[data-upload-state=job]", timeout=120_000)
    made = ("request failed: PATCH", "console error: Failed to load resource: net::ERR_INTERNET_DISCONNECTED")
    page.problems[:] = [m for m in page.problems if not m.startswith(made)]
    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    upload = site.api("op2").get(f"/api/jobs/{job_id}").json()["upload"]
    assert upload["sha256"] == hashlib.sha256(footage.read_bytes()).hexdigest()


def test_a_job_whose_track_cannot_be_read_names_the_track_on_the_page(
    open_page: Any, site: Site, tmp_path: Path
) -> None:
    """Footage sent through the page with a CSV track whose third line has a latitude of 123.4: the job
    fails, and its error said "the GPS track could not be read", not which file. Now the error, the
    job's line and the upload's row in Recent uploads name the track as it was chosen."""
    page = _page(open_page, "op1", label="track-named")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    track = tmp_path / "drive_0612.csv"
    track.write_bytes(b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n2026-11-20T01:00:05Z,123.4,120\n")
    p.set_input_files("#file", str(fresh_copy(tmp_path, "track-named")))
    p.set_input_files("#track", str(track))
    p.click("#upload-submit")
    p.wait_for_selector(DONE_OR_FAILED, timeout=300_000)
    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    job = site.api("op1").get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["upload"]["track_filename"] == "drive_0612.csv", job
    assert job["error"] == (
        "GPS track 'drive_0612.csv' could not be read: line 3: bad latitude 123.4 (must be -90..90)"
    )
    assert p.inner_text("#upload-message") == f"检测失败：{job['error']}"
    assert "GPS 轨迹 'drive_0612.csv'" in p.inner_text("#job-text")
    row = p.locator(f"#recent-uploads tbody tr[data-upload='{job['upload']['id']}']")
    row.wait_for()
    assert "GPS 轨迹 'drive_0612.csv'" in row.inner_text()
    page.shot("track-named")


def test_a_job_whose_track_passed_no_grid_cell_says_the_footage_may_be_sent_again(
    open_page: Any, site: Site, tmp_path: Path
) -> None:
    """Real footage sent through the page with another city's GPS track (Shanghai's, for the Hangzhou demo
    grid): the job is done with the API's off-grid warning (English), and the page tells, in its own
    language, that the footage may be sent again with the right track. Before, nothing said so, and such
    a resend was refused with 409. Sent again with the same track, the page shows the same job and the
    same hint in English."""
    page = _page(open_page, "op1", label="off-grid")
    p = page.page
    page.goto("/upload")
    p.wait_for_selector("body[data-upload-state=ready]")
    track = tmp_path / "shanghai_0612.csv"
    fixes = [
        f"2026-11-20T01:{i // 6:02d}:{i % 6 * 10:02d}Z,{31.2304 + i * 0.0001:.4f},121.4737" for i in range(60)
    ]
    track.write_text("time,lat,lon\n" + "\n".join(fixes) + "\n")
    footage = fresh_copy(tmp_path, "off-grid")
    local_start = "2026-11-20T09:00:00"  # the track's first fix on the default camera's clock (UTC+8)
    p.set_input_files("#file", str(footage))
    p.set_input_files("#track", str(track))
    p.fill("#start_time", local_start)
    p.click("#upload-submit")
    p.wait_for_selector(DONE_OR_FAILED, timeout=300_000)
    job_id = int(p.get_attribute("#upload-status", "data-job-id") or 0)
    job = site.api("op1").get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "done" and job["track_off_grid"] is True, job
    assert "GPS track 'shanghai_0612.csv' passes through no grid cell" in job["warning"], job
    assert "placed none" not in job["warning"], job  # the frames were placed, off the grid
    message = p.inner_text("#upload-message")
    assert job["warning"] in message and "\n" in message, message  # the hint on a line of its own
    assert message.endswith(
        "其 GPS 轨迹未经过任何网格：如轨迹有误（别的日期、别的地方，或经纬度颠倒），"
        "请用正确的轨迹重新上传此视频。届时其案件将归入所在网格，本次仍待审核的案件随之作废。"
    ), message
    assert "warning" in (p.get_attribute("#upload-message", "class") or "")
    page.shot("off-grid")

    p.click("button[lang=en]")  # the English switch
    p.wait_for_selector("body[data-upload-state=ready]")
    p.set_input_files("#file", str(footage))
    p.set_input_files("#track", str(track))
    p.fill("#start_time", local_start)
    p.click("#upload-submit")
    p.wait_for_selector(DONE_OR_FAILED, timeout=300_000)
    assert int(p.get_attribute("#upload-status", "data-job-id") or 0) == job_id
    message = p.inner_text("#upload-message")
    assert job["warning"] in message and message.endswith(
        "Its GPS track passed no grid cell: if it was the wrong track (another day's, another place's, "
        "latitude and longitude swapped), send this footage again with the right one. Its cases are then "
        "filed in their grid cells, and this run's cases still under review are replaced."
    ), message
    page.shot("off-grid-en")

"""After an operator corrects a frame's box, every page that shows the case draws the corrected box
(the case page, the review card, the team's task page, the case and task lists), over a real HTTP
server; the evidence files themselves are never changed and `gridpatrol evidence verify` passes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from api.cli.main import main
from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
SITE = REPO / "configs" / "site.yaml"
WIDTH, HEIGHT = 640, 480
DETECTION = (60.0, 60.0, 200.0, 180.0)  # where the detector put the car: wrong
CORRECTED = (300.0, 220.0, 560.0, 420.0)  # where the operator says it is


def _raw_frame() -> bytes:
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _post_case(device: httpx.Client, name: str, lat: float) -> tuple[int, str]:
    """A case of team-ziyang's cell with a raw frame, a crop and an annotated frame: its id and the
    raw frame's SHA-256."""
    raw = _raw_frame()
    files = {"annotated": jpeg_bytes(name + "a"), "crop": jpeg_bytes(name + "c"), "raw": raw}
    data = incident_json(name, position=(lat, 120.16), files=files)
    data.update(object_kind="car", box=list(DETECTION))
    answer = post_incident(device, data, files)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["case_id"]), hashlib.sha256(raw).hexdigest()


def _box(box: tuple[float, float, float, float], op: str) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "class_name": "car", "op": op}


def _boxes(text: str) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in box.split(",")) for box in text.split()]


def _flagged_boxes(html: str) -> list[tuple[float, ...]]:
    """The boxes the page hands frames.js for its big evidence frame (case and task pages)."""
    found = re.search(r'class="frame flagged-frame" data-boxes="([^"]*)"', html)
    assert found, html[:500]
    return _boxes(found.group(1))


def _red(image: np.ndarray, x: float, y: float) -> bool:
    b, g, r = (int(v) for v in image[int(y), int(x)])
    return r > 180 and g < 90 and b < 90


def _picture(client: httpx.Client, url: str) -> np.ndarray:
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg", answer.text[:300]
    image = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_pages_draw_the_corrected_box_and_the_evidence_is_untouched(
    make_server: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("device") as device, server.client("operator") as operator:
        case_id, raw_sha = _post_case(device, "fix-1", 30.2500)
        removed_id, _ = _post_case(device, "fix-2", 30.2510)
        fixed = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(CORRECTED, "correct")]})
        assert fixed.status_code == 200, fixed.text
        sighting_id = fixed.json()["sighting_id"]
        gone = operator.post(f"/api/cases/{removed_id}/boxes", json={"boxes": [_box(DETECTION, "remove")]})
        assert gone.status_code == 200 and gone.json()["boxes"] == [], gone.text

        corrected = f"/api/cases/{case_id}/sightings/{sighting_id}/corrected"
        frame = _picture(operator, corrected + "?view=frame")
        assert frame.shape[:2] == (HEIGHT, WIDTH)
        assert _red(frame, 430, CORRECTED[1]) and _red(frame, CORRECTED[0], 320)  # the new box's edges
        assert not _red(frame, 130, DETECTION[1]) and not _red(frame, DETECTION[0], 120)  # not the old
        crop = _picture(operator, corrected + "?view=crop")
        assert crop.shape[:2] == (260, 338)  # the box (260 x 200) grown by 15 % each side
        assert _red(crop, 169, 30) and not _red(crop, 169, 130)
        # a crop of a frame whose every box was removed is none, named; a frame never corrected too
        removed_sighting = gone.json()["sighting_id"]
        no_crop = operator.get(f"/api/cases/{removed_id}/sightings/{removed_sighting}/corrected?view=crop")
        assert no_crop.status_code == 404 and "no box left" in no_crop.text, no_crop.text
        assert operator.get(f"/api/cases/{case_id}/sightings/{removed_sighting}/corrected").status_code == 404
        assert operator.get(corrected + "?view=side").status_code == 422
        # the evidence file is the one the device sent, byte for byte
        assert hashlib.sha256(operator.get(f"/api/evidence/{raw_sha}").content).hexdigest() == raw_sha

    with server.browser("operator") as page:
        card = page.get("/review").text  # the oldest case first: the corrected one
        assert f'data-case-id="{case_id}"' in card
        found = re.search(r'<div class="frame" data-boxes="([^"]*)">\s*<img [^>]*class="flagged"', card)
        assert found and _boxes(found.group(1)) == [CORRECTED], card[:2000]
        assert f'src="{corrected}?view=crop&amp;v=' in card  # the crop cut around the corrected box
        html = page.get(f"/cases/{case_id}").text
        assert _flagged_boxes(html) == [CORRECTED]
        assert f"{corrected}?view=frame&amp;v=" in html and f"{corrected}?view=crop&amp;v=" in html
        assert _flagged_boxes(page.get(f"/cases/{removed_id}").text) == []  # removed: no box at all
        assert f'src="{corrected}?view=crop&amp;v=' in page.get("/cases").text  # the list's thumbnail

    with server.client("operator") as office:
        for to in ("filed", "dispatched"):
            moved = office.post(f"/api/cases/{case_id}/transitions", json={"to": to})
            assert moved.status_code == 200, moved.text
    with server.browser("ziyang") as team:
        task = team.get(f"/tasks/{case_id}").text
        assert _flagged_boxes(task) == [CORRECTED]
        assert f'src="{corrected}?view=crop&amp;v=' in task and "fix-1c" not in task
        assert f'src="{corrected}?view=crop&amp;v=' in team.get("/tasks").text
        assert _picture(team, corrected + "?view=crop").shape[:2] == (260, 338)  # the team may see it
    with server.client("hubin") as other_team:
        assert other_team.get(corrected).status_code == 404  # not their case

    settings = server.services.settings
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", settings.database_url)
    capsys.readouterr()
    assert main(["evidence", "verify"]) == 0, capsys.readouterr().out
    assert "0 problem(s)" in capsys.readouterr().out


STRIP = (  # role, ts (s), the tracker's box then; the middle picture is the best frame (best_ts 100)
    ("dwell_first", 10.0, (64.0, 62.0, 204.0, 182.0)),
    ("dwell_middle", 100.0, DETECTION),
    ("dwell_last", 200.0, (58.0, 61.0, 198.0, 181.0)),
)
WINDOW = (0.0, 0.0, 640.0, 480.0)


def _strip_boxes(html: str) -> dict[str, tuple[str, list[tuple[float, ...]]]]:
    """alt text of each strip picture -> (whose its boxes are, the boxes)."""
    found = re.findall(
        r'<div class="frame (?:thumb-frame )?boxes-(\w+)" data-boxes="([^"]*)" data-window="[^"]*">\s*'
        r'<img src="[^"]*" alt="([^"]*)"',
        html,
    )
    return {alt: (by, _boxes(boxes) if boxes else []) for by, boxes, alt in found}


def test_the_dwell_strip_does_not_contradict_a_corrected_box(make_server: Any, sqlite_url: str) -> None:
    """The strip's picture of the best frame (its time is best_ts) shows the boxes as corrected; those
    of other times keep the tracker's box, marked (dashed, captioned, a note) as the detector's, not
    the operator's. Before, the strip showed the tracker's boxes as if nobody had corrected one, the
    best frame's included."""
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    raw = _raw_frame()
    files = {"annotated": jpeg_bytes("s-a"), "crop": jpeg_bytes("s-c"), "raw": raw}
    files.update({role: jpeg_bytes("s-" + role) for role, _, _ in STRIP})
    data = incident_json("strip-1", position=(30.2500, 120.16), files=files)
    data.update(object_kind="car", box=list(DETECTION))
    for entry in data["evidence"]:
        for role, ts, box in STRIP:
            if entry["role"] == role:
                entry.update(ts=ts, window=list(WINDOW), box=list(box))
    first, middle, last = (box for _, _, box in STRIP)
    with server.client("device") as device, server.client("operator") as operator:
        answer = post_incident(device, data, files)
        assert answer.status_code == 201, answer.text
        case_id = int(answer.json()["case_id"])
        with server.browser("operator") as page:
            card = page.get("/review").text
            assert _strip_boxes(card) == {
                "first seen": ("tracked", [first]),
                "middle": ("tracked", [middle]),
                "last seen": ("tracked", [last]),
            }, card
            assert "strip-note" not in card
        fixed = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(CORRECTED, "correct")]})
        assert fixed.status_code == 200, fixed.text
    note = "The box was corrected on the flagged frame only"
    with server.browser("operator") as page:
        card = page.get("/review").text
        assert f'data-case-id="{case_id}"' in card
        expected = {
            "first seen": ("detector", [first]),
            "middle": ("corrected", [CORRECTED]),
            "last seen": ("detector", [last]),
        }
        assert _strip_boxes(card) == expected, card
        assert note in card and card.count("detector&#39;s box, not corrected") == 2
        detail = page.get(f"/cases/{case_id}").text
        assert _strip_boxes(detail.split('id="sightings"')[0]) == expected
        assert note in detail
        # the sighting's thumbnails: the same boxes, marked the same way
        thumbs = {
            alt: by
            for by, _, alt in re.findall(
                r'<div class="frame thumb-frame boxes-(\w+)" data-boxes="([^"]*)" data-window="[^"]*">\s*'
                r'<img src="[^"]*" alt="([^"]*)"',
                detail,
            )
        }
        assert thumbs == {"First seen": "detector", "Middle": "corrected", "Last seen": "detector"}
    with server.client("operator") as office:
        for to in ("filed", "dispatched"):
            assert office.post(f"/api/cases/{case_id}/transitions", json={"to": to}).status_code == 200
    with server.browser("ziyang") as team:
        task = team.get(f"/tasks/{case_id}").text
        assert _strip_boxes(task) == expected and note in task


def test_a_corrected_picture_is_drawn_again_only_when_its_boxes_change(
    make_server: Any, sqlite_url: str
) -> None:
    """The pictures carry an ETag of what they are drawn from: a client that holds one (If-None-Match)
    gets a 304 with no picture, kept by no shared cache (private); a new correction gives a new ETag
    and the new picture. Before, every request drew the picture again, with no ETag to ask by."""
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("device") as device, server.client("operator") as operator:
        case_id, _ = _post_case(device, "etag-1", 30.2500)
        fixed = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(CORRECTED, "correct")]})
        assert fixed.status_code == 200, fixed.text
        url = f"/api/cases/{case_id}/sightings/{fixed.json()['sighting_id']}/corrected"
        tags = {}
        for view in ("frame", "crop"):
            drawn = operator.get(url, params={"view": view})
            assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
            assert drawn.headers["cache-control"].startswith("private"), drawn.headers
            tags[view] = drawn.headers["etag"]
            assert re.fullmatch(r'"[0-9a-f]{40}"', tags[view]), tags
            for held in (tags[view], f'"stale", W/{tags[view]}', "*"):
                kept = operator.get(url, params={"view": view}, headers={"If-None-Match": held})
                assert kept.status_code == 304 and kept.content == b"", (held, kept.status_code)
                assert kept.headers["etag"] == tags[view] and "private" in kept.headers["cache-control"]
            again = operator.get(url, params={"view": view}, headers={"If-None-Match": '"stale"'})
            assert again.status_code == 200 and again.headers["etag"] == tags[view]
        assert tags["frame"] != tags["crop"]
        # a page's URL (with its v=) gets the same answers
        assert (
            operator.get(f"{url}?view=crop&v=1", headers={"If-None-Match": tags["crop"]}).status_code == 304
        )

        # the operator moves the box again: the pictures held are not the ones drawn now
        moved = (280.0, 200.0, 600.0, 440.0)
        again = operator.post(
            f"/api/cases/{case_id}/boxes",
            json={"boxes": [_box(CORRECTED, "remove"), _box(moved, "add")]},
        )
        assert again.status_code == 200 and len(again.json()["boxes"]) == 1, again.text
        for view in ("frame", "crop"):
            redrawn = operator.get(url, params={"view": view}, headers={"If-None-Match": tags[view]})
            assert redrawn.status_code == 200 and redrawn.headers["etag"] not in tags.values(), view
        frame = _picture(operator, url + "?view=frame")
        assert _red(frame, 440, moved[1]) and not _red(frame, 430, CORRECTED[1])
        # every box removed: no crop to hold, whatever the client says it holds
        gone = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(moved, "remove")]})
        assert gone.status_code == 200 and gone.json()["boxes"] == [], gone.text
        none = operator.get(url, params={"view": "crop"}, headers={"If-None-Match": "*"})
        assert none.status_code == 404 and "no box left" in none.text
    with server.client("hubin") as other_team:  # not their case: no 304 tells them it is there
        assert other_team.get(url, headers={"If-None-Match": "*"}).status_code == 404


@pytest.mark.slow
@pytest.mark.browser
def test_the_browser_keeps_the_pictures_it_was_given(make_server: Any, sqlite_url: str) -> None:
    """In a real browser: the review card and the case list show a corrected picture; shown again,
    the browser asks with the ETag it holds and is answered 304 (nothing drawn again), and shows it."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("device") as device, server.client("operator") as operator:
        case_id, _ = _post_case(device, "kept-1", 30.2500)
        fixed = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(CORRECTED, "correct")]})
        assert fixed.status_code == 200, fixed.text
    crop = f"/api/cases/{case_id}/sightings/{fixed.json()['sighting_id']}/corrected?view=crop"
    answers: list[tuple[str, int]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": "gp_session", "value": server.tokens["operator"], "url": server.url}]
            )
            page = context.new_page()
            page.on(
                "response", lambda r: answers.append((r.url, r.status)) if "/corrected?" in r.url else None
            )
            shown = f"img[src^='{crop}']"
            for path in ("/cases", "/cases", "/review", "/review"):
                page.goto(server.url + path)
                page.locator(shown).first.evaluate("img => img.decode()")
                assert page.locator(shown).first.evaluate("img => img.naturalWidth") == 338, path
        finally:
            browser.close()
    statuses = [status for url, status in answers if crop in url]
    assert statuses == [200, 304, 304, 304], answers


STRIP_WINDOW = (40.0, 40.0, 360.0, 280.0)  # the part of the frame the strip shows: 320 x 240, 1:1


def _strip_picture(grey: int) -> bytes:
    image = np.full((240, 320, 3), grey, np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _amber(image: np.ndarray, x: float, y: float) -> bool:
    b, g, r = (int(v) for v in image[int(y), int(x)])
    return r > 180 and 110 < g < 230 and b < 90


def _zoom_links(html: str) -> dict[str, str]:
    """alt text of each strip picture the task page opens by itself -> the address it opens."""
    found = re.findall(
        r'<a href="([^"]*)" target="_blank" rel="noopener" class="zoom"><div class="frame boxes-\w+"'
        r'[^>]*>\s*<img src="[^"]*" alt="([^"]*)"',
        html,
    )
    return {alt: href.replace("&amp;", "&") for href, alt in found}


def _strip_case(server: LiveServer) -> int:
    """A case of team-ziyang, dispatched to it, whose sighting has a dwell strip of real pictures of
    STRIP_WINDOW with the tracker's boxes (STRIP): its id."""
    raw = _raw_frame()
    files = {"annotated": jpeg_bytes("z-a"), "crop": jpeg_bytes("z-c"), "raw": raw}
    files.update({role: _strip_picture(100 + 10 * i) for i, (role, _, _) in enumerate(STRIP)})
    data = incident_json("zoom-1", position=(30.2500, 120.16), files=files)
    data.update(object_kind="car", box=list(DETECTION))
    for entry in data["evidence"]:
        for role, ts, box in STRIP:
            if entry["role"] == role:
                entry.update(ts=ts, window=list(STRIP_WINDOW), box=list(box))
    with server.client("device") as device, server.client("operator") as office:
        answer = post_incident(device, data, files)
        assert answer.status_code == 201, answer.text
        case_id = int(answer.json()["case_id"])
        for to in ("filed", "dispatched"):
            assert office.post(f"/api/cases/{case_id}/transitions", json={"to": to}).status_code == 200
    return case_id


def test_a_strip_picture_opened_by_itself_shows_its_box(make_server: Any, sqlite_url: str) -> None:
    """A dwell-strip picture tapped on the task page (clicked among a sighting's pictures on the case
    page) opened the evidence file by itself: the small picture's box is drawn over it by the page, so
    full size it showed none, and nothing said which object the strip follows. It opens a picture
    drawn with that box (the tracker's, red; once the best frame was corrected, the operators' on the
    best frame's picture and the tracker's, amber and dashed, on the others), with an ETag of what it
    is drawn from (a 304 for the one held, a new tag once a correction changes its boxes)."""
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    case_id = _strip_case(server)
    wx, wy = STRIP_WINDOW[:2]
    with server.browser("ziyang") as team:
        links = _zoom_links(team.get(f"/tasks/{case_id}").text)
        assert set(links) == {"first seen", "middle", "last seen"}, links
        tags = {}
        for (role, _, box), alt in zip(STRIP, ("first seen", "middle", "last seen"), strict=True):
            assert re.fullmatch(rf"/api/cases/{case_id}/sightings/\d+/strip/{role}\?v=\w+", links[alt])
            shown = team.get(links[alt])
            assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg", shown.text
            assert shown.headers["cache-control"] == "private, no-cache"
            image = cv2.imdecode(np.frombuffer(shown.content, np.uint8), cv2.IMREAD_COLOR)
            x1, y1, x2, y2 = (box[0] - wx, box[1] - wy, box[2] - wx, box[3] - wy)
            assert image.shape[:2] == (240, 320)
            assert _red(image, x1 + 1, (y1 + y2) / 2) and _red(image, (x1 + x2) / 2, y1 + 1), role
            assert not _red(image, (x1 + x2) / 2, (y1 + y2) / 2), role
            tags[role] = shown.headers["etag"]
            held = team.get(links[alt], headers={"If-None-Match": tags[role]})
            assert held.status_code == 304 and held.content == b"" and held.headers["etag"] == tags[role]
        url = links["middle"].split("?")[0]

    with server.client("operator") as operator:
        fixed = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(CORRECTED, "correct")]})
        assert fixed.status_code == 200, fixed.text
        with server.browser("operator") as page:  # the case page's sighting pictures open the same
            detail = page.get(f"/cases/{case_id}").text.split('id="sightings"')[1]
            for role, _, _ in STRIP:
                opens = rf'<a href="/api/cases/{case_id}/sightings/\d+/strip/{role}\?v='
                assert re.search(opens, detail), role
    with server.browser("ziyang") as team:
        again = _zoom_links(team.get(f"/tasks/{case_id}").text)
        assert again["middle"] != links["middle"] and again["middle"].startswith(url)  # v changed
        middle = team.get(url, headers={"If-None-Match": tags["dwell_middle"]})
        assert middle.status_code == 200 and middle.headers["etag"] != tags["dwell_middle"]
        image = cv2.imdecode(np.frombuffer(middle.content, np.uint8), cv2.IMREAD_COLOR)
        x1, y1 = CORRECTED[0] - wx, CORRECTED[1] - wy  # the operators' box, cut off by the window
        assert _red(image, x1 + 1, y1 + 10) and not _red(image, DETECTION[0] - wx + 1, 60)
        first = team.get(again["first seen"])
        assert first.headers["etag"] != tags["dwell_first"]
        image = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
        box = STRIP[0][2]
        assert _amber(image, box[0] - wx + 3, box[1] - wy + 1), "the detector's box: amber"
        assert not _amber(image, box[0] - wx + 12, box[1] - wy + 1), "dashed, as the pages draw it"
        assert team.get(url.replace("dwell_middle", "dwell_centre")).status_code == 422
    with server.client("hubin") as other_team:  # not their case: no 304 tells them it is there
        assert other_team.get(url, headers={"If-None-Match": "*"}).status_code == 404


@pytest.mark.slow
@pytest.mark.browser
def test_a_strip_picture_tapped_on_the_phone_opens_with_its_box(make_server: Any, sqlite_url: str) -> None:
    """On the team's phone: a strip picture tapped opens in a tab of its own, the picture drawn with
    its box (a red outline where the tracker's box is), the task page staying as it was."""
    from tests.api.test_task_page_phone import phone, task_page

    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    case_id = _strip_case(server)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        with context.expect_page(timeout=5000) as opened:
            page.locator("#evidence .task-photos .frame.boxes-tracked img").nth(1).tap()
        tab = opened.value
        tab.wait_for_load_state()
        assert re.fullmatch(
            rf"{server.url}/api/cases/{case_id}/sightings/\d+/strip/dwell_middle\?v=\w+", tab.url
        )
        shown = tab.request.get(tab.url)
        image = cv2.imdecode(np.frombuffer(shown.body(), np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = (DETECTION[0] - 40, DETECTION[1] - 40, DETECTION[2] - 40, DETECTION[3] - 40)
        assert _red(image, x1 + 1, (y1 + y2) / 2) and not _red(image, (x1 + x2) / 2, (y1 + y2) / 2)
        tab.close()
        assert page.url == f"{server.url}/tasks/{case_id}"
    assert problems == []

"""The case pages in a real browser: the list's filters, sorting and paging (a plain GET form), a case's
evidence, history, custody check and place for each role, the moves a role may make on the case page
(a race between two operators is a 409 message, not a 500), dispatching to another team, rejecting
with a reason, and the officers' task list sorted by the phone's position.

The tests of this module share one server: the first two only read the two demo cases; the later
ones make their own cases through the incident API, each in its own place."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import SHARED, Site

PHONE = (390, 844)
PARKING, DEBRIS = "GP-2026-000001", "GP-2026-000002"


def a_photo() -> Path:
    photos = sorted((SHARED / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg"))
    if not photos:
        pytest.skip("no cn-garbage photos under ../shared/datasets")
    return photos[0]


def new_case(
    api: httpx.Client, name: str, lat: float, lon: float, category: str = "illegal_parking"
) -> dict[str, Any]:
    """A case from an incident sent to the API (a camera of its own, so it never merges with another)."""
    photo = a_photo().read_bytes()
    when = datetime.now(UTC).isoformat()
    incident = {
        "id": f"web-{name}",
        "category": category,
        "object_kind": "car",
        "source_id": f"web-cam-{name}",
        "box": [40.0, 60.0, 300.0, 280.0],
        "confidence_median": 0.8,
        "confidence_max": 0.9,
        "first_seen_wall": when,
        "last_seen_wall": when,
        "position": [lat, lon],
        "closed": True,
        "evidence": [
            {
                "role": "raw",
                "path": "raw.jpg",
                "sha256": hashlib.sha256(photo).hexdigest(),
                "media_type": "image/jpeg",
            }
        ],
    }
    r = api.post(
        "/api/incidents",
        data={"incident": json.dumps(incident)},
        files=[("files", ("raw.jpg", photo, "image/jpeg"))],
    )
    assert r.status_code == 201, r.text
    return dict(api.get(f"/api/cases/{r.json()['case_id']}").json())


def move(api: httpx.Client, case_id: int, to: str, **fields: str) -> dict[str, Any]:
    r = api.post(f"/api/cases/{case_id}/transitions", data={"to": to, **fields})
    assert r.status_code == 200, r.text
    return dict(r.json())


def numbers(page: Any) -> list[str]:
    return list(page.locator("#case-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)"))


def list_of(watched: Any, query: str) -> list[str]:
    goto(watched, f"/cases?{query}")
    return numbers(watched.page)


def settle(page: Any) -> None:
    """Every image loaded and every stored box drawn (before a screenshot)."""
    page.wait_for_function(
        "() => [...document.images].every(i => !i.getAttribute('src') || (i.complete && i.naturalWidth > 0))"
    )


def expect_status(watched: Any, path: str, status: int) -> Any:
    """Open a page that answers with an error status on purpose (chromium logs that on its console
    too, which is expected here)."""
    watched.allowed_statuses.add(status)
    before = len(watched.problems)
    response = watched.goto(path)
    watched.page.wait_for_load_state("networkidle")
    assert response.status == status
    watched.problems[before:] = [p for p in watched.problems[before:] if f"status of {status}" not in p]
    return response


def submit(page: Any, form: str, url_part: str | None = None) -> None:
    follow(page, f"{form} button[type=submit]", (lambda url: url_part in url) if url_part else None)


def follow(page: Any, selector: str, url: Any = None) -> None:
    """Click a link or button that navigates, and wait until the new page is quiet (its images and
    icon fetched), so that the next navigation never aborts a request of this one."""
    with page.expect_navigation(url=url):
        page.click(selector)
    page.wait_for_load_state("networkidle")


def goto(watched: Any, path: str) -> Any:
    """Open a page and wait until it is quiet (its images and icon fetched), so that the next
    navigation never aborts a request of this one."""
    response = watched.goto(path)
    watched.page.wait_for_load_state("networkidle")
    return response


def no_raw_keys(page: Any) -> None:
    """Every label came from the catalogue (a missing key shows as the key itself)."""
    text = page.inner_text("main")
    assert "cases." not in text and "tasks." not in text and "status." not in text, text


def test_the_list_filters_sorts_and_pages(site: Site, open_page: Any) -> None:
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    goto(office, "/cases")
    assert sorted(numbers(page)) == [PARKING, DEBRIS]
    settle(page)
    no_raw_keys(page)
    office.shot("all")

    # the GET form: a case number typed in any case
    page.fill("input[name=number]", "gp-2026-000002")
    follow(page, "#apply-filters", lambda url: "number=gp-2026-000002" in url)
    assert numbers(page) == [DEBRIS]
    assert page.input_value("input[name=number]") == "gp-2026-000002"

    assert list_of(office, "category=illegal_parking") == [PARKING]
    assert sorted(list_of(office, "status=pending_review&status=filed")) == [PARKING, DEBRIS]
    assert page.locator("input[name=status][value=filed]").is_checked()
    assert list_of(office, "status=closed") == []
    assert page.locator("#no-cases").count() == 1
    assert list_of(office, "team=team-nanxing") == [DEBRIS]
    assert list_of(office, "grid_cell=DEMO-ZIYANG-04") == [PARKING]
    assert list_of(office, "grid_cell=unassigned") == []
    assert list_of(office, "camera=demo-cam-02") == [DEBRIS]
    assert list_of(office, "plate=%E6%B5%99A00000") == []
    assert sorted(list_of(office, "since=2000-01-01&until=2099-12-31T23:59")) == [PARKING, DEBRIS]
    assert list_of(office, "since=2099-01-01") == []
    assert list_of(office, "until=2000-01-01") == []
    assert list_of(office, "sort=number&order=asc") == [PARKING, DEBRIS]
    assert list_of(office, "sort=number&order=desc") == [DEBRIS, PARKING]
    assert list_of(office, "sort=sightings&order=asc") and list_of(office, "sort=created_at&order=asc")

    # paging keeps the filters
    assert list_of(office, "sort=number&order=asc&per_page=1") == [PARKING]
    follow(page, "#page-next")
    assert numbers(page) == [DEBRIS] and "per_page=1" in page.url and "sort=number" in page.url
    assert page.locator("#page-prev").count() == 1 and page.locator("#page-next").count() == 0

    # a hand-edited link: what cannot be read is named and ignored, never an error page
    assert sorted(list_of(office, "since=yesterday&page=abc&status=nonsense")) == [PARKING, DEBRIS]
    problems = page.inner_text("#filter-problems")
    assert "最后发现不早于" in problems and "页码" in problems
    office.shot("problems")

    follow(page, "header.topbar button[lang=en]")
    assert sorted(list_of(office, "since=yesterday")) == [PARKING, DEBRIS]
    assert "Last seen from" in page.inner_text("#filter-problems")
    goto(office, "/cases")
    settle(page)
    no_raw_keys(page)
    office.shot("all-en")

    # what each role sees: an officer only the team's cases
    for username, seen in (("ziyang1", [PARKING]), ("nanxing1", [DEBRIS]), ("viewer1", [DEBRIS, PARKING])):
        officer = username != "viewer1"
        other = open_page(viewport=PHONE if officer else (1366, 900), mobile=officer, label=username)
        other.login(username)
        assert sorted(list_of(other, "")) == sorted(seen)
        assert (other.page.locator("select[name=team]").count() == 0) is officer
        if username == "ziyang1":
            settle(other.page)
            other.shot("phone-list")


def test_a_case_page_for_each_role(site: Site, open_page: Any) -> None:
    case_id = site.api("op1").get("/api/cases", params={"number": PARKING}).json()["items"][0]["id"]

    viewer = open_page(label="viewer1")
    viewer.login("viewer1")
    page = viewer.page
    goto(viewer, f"/cases/{case_id}")
    settle(page)
    # the flagged frame with the stored box drawn over it, the dwell strip, every sighting's evidence
    page.wait_for_function(
        "() => Number(document.querySelector('.flagged-frame rect').getAttribute('width')) > 1"
    )
    assert page.locator("#evidence .strip figure").count() == 3
    assert page.locator("#sightings .sighting").count() == 1
    assert page.locator("#sightings .sighting figure").count() >= 3
    assert page.locator("#timeline li").evaluate_all("l => l.map(i => i.dataset.action)") == ["created"]
    assert page.inner_text("#custody-result") == "监管链完整，共 1 条记录"
    assert page.locator("#place-map polygon.cell.own").count() == 1
    assert page.locator("#place-map circle.case-point").count() == 1
    # a viewer has nothing to do
    assert page.locator("#actions form").count() == 0 and page.locator("#no-actions").count() == 1
    no_raw_keys(page)
    viewer.shot("viewer")

    office = open_page(label="op1")
    office.login("op1")
    goto(office, f"/cases/{case_id}")
    targets = office.page.locator("#actions form").evaluate_all("fs => fs.map(f => f.dataset.target)")
    assert targets == ["filed", "rejected"]
    reasons = office.page.locator("form.move-rejected select[name=reason] option").evaluate_all(
        "o => o.map(x => x.value)"
    )
    assert reasons == ["", "false_positive", "duplicate", "not_a_violation", "exempt"]
    follow(office.page, "header.topbar button[lang=en]")
    settle(office.page)
    assert office.page.inner_text("#custody-result") == "Chain intact, 1 entry"
    no_raw_keys(office.page)
    office.shot("operator-en")

    officer = open_page(viewport=PHONE, mobile=True, label="ziyang1")
    officer.login("ziyang1")
    goto(officer, f"/cases/{case_id}")
    settle(officer.page)
    assert officer.page.locator("#actions form").count() == 0  # pending review is the office's
    officer.shot("officer-phone")


def test_two_operators_race_and_a_dispatch_to_another_team(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    case = new_case(api, "race", 30.2750, 120.1600)
    assert (case["grid_cell"], case["team"]) == ("DEMO-ZIYANG-04", "team-ziyang")
    case_id, number = case["id"], case["number"]

    first, second = open_page(label="op1"), open_page(label="op2")
    first.login("op1")
    second.login("op2")
    goto(first, f"/cases/{case_id}")
    goto(second, f"/cases/{case_id}")
    submit(first.page, "form.move-filed", "done=filed")
    assert number in first.page.inner_text("#move-done")

    # op2's page still offers filing: the domain refuses it (409) and the page says so
    second.allowed_statuses.add(409)
    before = len(second.problems)
    with second.page.expect_navigation() as answer:
        second.page.click("form.move-filed button[type=submit]")
    second.page.wait_for_load_state("networkidle")
    assert answer.value.status == 409
    second.problems[before:] = [p for p in second.problems[before:] if "status of 409" not in p]
    assert "已立案" in second.page.inner_text("#move-error")
    assert second.page.get_attribute("#case", "data-status") == "filed"
    second.shot("conflict")

    # op2 dispatches it to another team than its cell's
    page = second.page
    assert page.input_value("form.move-dispatched select[name=team]") == "team-ziyang"
    page.select_option("form.move-dispatched select[name=team]", "team-nanxing")
    submit(page, "form.move-dispatched", "done=dispatched")
    assert "team-nanxing" in page.inner_text("#timeline li[data-action=dispatched]")
    assert api.get(f"/api/cases/{case_id}").json()["team"] == "team-nanxing"
    second.shot("dispatched-to-nanxing")

    ziyang = open_page(viewport=PHONE, mobile=True, label="ziyang1")
    ziyang.login("ziyang1")
    assert ziyang.page.locator(f"li.task[data-number='{number}']").count() == 0
    expect_status(ziyang, f"/cases/{case_id}", 404)
    nanxing = open_page(viewport=PHONE, mobile=True, label="nanxing1")
    nanxing.login("nanxing1")
    assert nanxing.page.locator(f"li.task[data-number='{number}']").count() == 1


def test_rejecting_with_a_reason(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    case = new_case(api, "reject", 30.2760, 120.1570)
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    goto(office, f"/cases/{case['id']}")
    page.select_option("form.move-rejected select[name=reason]", "duplicate")
    page.fill("form.move-rejected textarea[name=note]", "与 GP-2026-000001 重复")
    submit(page, "form.move-rejected", "done=rejected")
    assert page.get_attribute("#case", "data-status") == "rejected"
    assert "重复" in page.inner_text("header.case-head")
    rejected = page.inner_text("#timeline li[data-action=rejected]")
    assert "原因: 重复" in rejected.replace("：", ": ") and "与 GP-2026-000001 重复" in rejected
    assert page.locator("#actions form").count() == 0
    settle(page)
    office.shot("rejected")
    assert api.get(f"/api/cases/{case['id']}").json()["reject_reason"] == "duplicate"


def test_tasks_nearest_first_handled_and_sent_back(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    far = new_case(api, "far", 30.2650, 120.1750, category="piled_debris")
    near = new_case(api, "near", 30.2690, 120.1720, category="piled_debris")
    for case in (far, near):
        assert case["team"] == "team-nanxing"
        move(api, case["id"], "filed")
        move(api, case["id"], "dispatched")
    nanxing_cases = api.get("/api/cases", params={"status": "dispatched", "team": "team-nanxing"}).json()[
        "items"
    ]
    dispatched = {c["number"] for c in nanxing_cases}
    assert {far["number"], near["number"]} <= dispatched

    # no position from the phone: oldest dispatch first
    officer = open_page(viewport=PHONE, mobile=True, label="nanxing1")
    officer.login("nanxing1")
    page = officer.page
    page.wait_for_function("() => document.body.dataset.taskOrder === 'dispatch'")
    order = page.locator("li.task").evaluate_all("l => l.map(i => i.dataset.number)")
    assert order.index(far["number"]) < order.index(near["number"])
    settle(page)
    officer.shot("oldest-first")

    # the phone's position next to `near`: the list asked for again from there (the server orders all
    # the team's tasks by distance before paging), nearest first, each with its distance
    located = open_page(viewport=PHONE, mobile=True, label="nanxing1-located")
    located.page.context.grant_permissions(["geolocation"], origin=site.base_url)
    located.page.context.set_geolocation({"latitude": 30.2691, "longitude": 120.1721})
    located.login("nanxing1")
    page = located.page
    page.wait_for_function("() => document.body.dataset.taskOrder === 'distance'")
    assert "near=30.26910%2C120.17210" in page.url
    assert page.inner_text("#task-order") == "退回重办的在前，其余按距离排序（最近的在前）"
    order = page.locator("li.task").evaluate_all("l => l.map(i => i.dataset.number)")
    assert order[0] == near["number"]
    distances = page.locator("li.task").evaluate_all("l => l.map(i => Number(i.dataset.distance))")
    assert distances == sorted(distances) and distances[0] < 50
    assert page.locator(f"li.task[data-number='{near['number']}'] .task-distance").inner_text() in (
        "10 米",
        "20 米",
    )
    settle(page)
    located.shot("nearest-first")

    # handled from the task page, then sent back to another team by the office
    follow(page, f"li.task[data-number='{near['number']}'] a", f"**/tasks/{near['id']}")
    page.fill("form.move-handled textarea[name=note]", "已清理")
    page.set_input_files("form.move-handled input[name=photo]", str(a_photo()))
    submit(page, "form.move-handled", "/tasks?done=")
    assert near["number"] in page.inner_text("#task-done")

    office = open_page(label="op1")
    office.login("op1")
    goto(office, f"/cases/{near['id']}")
    targets = office.page.locator("#actions form").evaluate_all("fs => fs.map(f => f.dataset.target)")
    assert targets == ["verified", "dispatched"]
    assert office.page.get_attribute("form.move-send_back textarea[name=note]", "required") is not None
    office.page.fill("form.move-send_back textarea[name=note]", "垃圾仍在，请紫阳队协助")
    office.page.select_option("form.move-send_back select[name=team]", "team-ziyang")
    submit(office.page, "form.move-send_back", "done=dispatched")
    settle(office.page)
    office.shot("sent-back")

    ziyang = open_page(viewport=PHONE, mobile=True, label="ziyang1")
    ziyang.login("ziyang1")
    ziyang.page.wait_for_function("() => document.body.dataset.taskOrder !== undefined")
    flags = ziyang.page.locator("li.task").evaluate_all(
        "l => l.map(i => [i.dataset.number, !!i.dataset.sentBack])"
    )
    assert [near["number"], True] in flags
    assert flags == sorted(flags, key=lambda flag: not flag[1])  # the cases sent back come first
    assert "退回重办" in ziyang.page.inner_text(f"li.task[data-number='{near['number']}']")
    follow(ziyang.page, f"li.task[data-number='{near['number']}'] a", f"**/tasks/{near['id']}")
    assert "退回重办" in ziyang.page.inner_text("#sent-back")
    assert "垃圾仍在，请紫阳队协助" in ziyang.page.inner_text("#dispatch-note")
    settle(ziyang.page)
    ziyang.shot("sent-back-task")
    follow(ziyang.page, "header.topbar button[lang=en]")
    assert ziyang.page.inner_text("#dispatch-note h2") == "Note from the office"
    no_raw_keys(ziyang.page)
    ziyang.shot("sent-back-task-en")


def test_every_name_the_case_pages_build_is_in_the_catalogue() -> None:
    """The keys the templates build from values (t("cases.move." ~ kind ~ ".title"), ...), which the
    catalogue test cannot see, exist in both languages."""
    from api.cases import workflow
    from api.cases.reading import SORTS
    from api.http.i18n import LANGUAGES, catalogue
    from api.http.pages.cases import EVIDENCE_ORDER

    kinds = [str(s) for s in workflow.ROLES_FOR] + ["send_back"]
    keys = [f"cases.move.{k}.{part}" for k in kinds for part in ("title", "help", "submit", "placeholder")]
    keys += [
        f"cases.action.{a}"
        for a in [*workflow.STATUSES, "created", "reopened", "seen_before_close", "undo", "recategorized"]
    ]
    keys += [f"cases.done.{s}" for s in workflow.STATUSES]
    keys += [f"cases.evidence.{role}" for role in EVIDENCE_ORDER]
    keys += [f"cases.strip.{label}" for label in ("first", "middle", "last")]
    keys += [f"cases.strip.boxes_by.{by}" for by in ("corrected", "detector")]  # views.strip_boxes
    keys += [f"cases.sort.{sort}" for sort in SORTS]
    keys += [f"cases.error.{field}" for field in ("note", "photo", "reason", "team", "to")]
    keys += [
        f"cases.filter.{name}"
        for name in (
            "category",
            "grid_cell",
            "team",
            "camera",
            "number",
            "plate",
            "since",
            "until",
            "page",
            "per_page",
        )
    ]
    for lang in LANGUAGES:
        assert [k for k in keys if k not in catalogue(lang)] == [], lang


def test_the_history_speaks_the_page_language(site: Site, open_page: Any) -> None:
    """The service's own history notes (the incident a case was created from) are shown in the page's
    language, from their parts; the API keeps them as stored."""
    api = site.api("op1")
    case = api.get("/api/cases", params={"number": DEBRIS}).json()["items"][0]
    stored = api.get(f"/api/cases/{case['id']}").json()["history"][0]
    assert stored["what"] == "created" and stored["note"].startswith("incident "), stored
    incident = stored["note"].removeprefix("incident ")
    viewer = open_page(label="viewer1")
    viewer.login("viewer1")
    goto(viewer, f"/cases/{case['id']}")
    note = viewer.page.inner_text("#timeline li[data-action=created] .note")
    assert note == f"来自事件 {incident}", note
    follow(viewer.page, "header.topbar button[lang=en]")
    assert viewer.page.inner_text("#timeline li[data-action=created] .note") == f"From incident {incident}"

"""The review -> retrain loop's first half (issue 13), over a real HTTP server on SQLite and PostgreSQL:
real frames posted as incidents, decisions made over the API and the review page (confirm, reject,
recategorise, undo, box corrections, bad boxes refused by name), then `gridpatrol dataset
from-reviews`: label files line by line, the camera split, deduplication, a rejected frame a negative."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml

from api.cases import custody
from api.cases.audit import audit
from api.cases.review_labels import BOXES_LABELLED
from api.cli.main import main
from api.http.cookies import CSRF_HEADER, SESSION_COOKIE, csrf_token_for
from api.storage.models import CustodyEntry, ReviewLabel
from detect.model.dataset import load_recipe
from detect.model.from_reviews import camera_split
from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "configs" / "site.yaml"
RECIPE = REPO / "datasets" / "gridpatrol-street.yaml"
ASSETS = Path(cv2.__file__).resolve().parents[1] / "ultralytics" / "assets"
LAT, LON = 30.2741, 120.1551

# real photos: ultralytics' bus.jpg (810 x 1080) and zidane.jpg (1280 x 720)
BUS_BOX = (22.0, 231.0, 805.0, 756.0)
PERSON_A = (747.0, 41.0, 1141.0, 712.0)
PERSON_B = (123.0, 197.0, 710.0, 712.0)
TIE = (360.0, 437.0, 524.0, 710.0)
FALSE_BOX = (5.0, 231.0, 788.0, 756.0)  # a "car" on the flipped bus photo, rejected as false
PEOPLE_BOX = (700.0, 30.0, 1180.0, 715.0)  # the detection the operator corrects to PERSON_A
UNDONE_BOX = (139.0, 41.0, 533.0, 712.0)


def _frames() -> dict[str, bytes]:
    bus = (ASSETS / "bus.jpg").read_bytes()
    zidane = (ASSETS / "zidane.jpg").read_bytes()
    bus_image = cv2.imdecode(np.frombuffer(bus, np.uint8), cv2.IMREAD_COLOR)
    zidane_image = cv2.imdecode(np.frombuffer(zidane, np.uint8), cv2.IMREAD_COLOR)
    again = cv2.imencode(".jpg", bus_image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    flipped = cv2.imencode(".jpg", cv2.flip(bus_image, 1))[1].tobytes()
    zidane_flipped = cv2.imencode(".jpg", cv2.flip(zidane_image, 1))[1].tobytes()
    return {
        "bus": bus,
        "bus_again": again,
        "bus_flipped": flipped,
        "zidane": zidane,
        "zidane_flipped": zidane_flipped,
    }


def _post(
    client: httpx.Client,
    name: str,
    raw: bytes,
    *,
    camera: str,
    kind: str,
    box: tuple[float, float, float, float],
    position: tuple[float, float],
    when: str,
) -> int:
    files = {"annotated": jpeg_bytes(name + "a"), "raw": raw}
    data = incident_json(name, position=position, when=when, source_id=camera, files=files)
    data.update(object_kind=kind, box=list(box), frame_index=1200)
    response = post_incident(client, data, files)
    assert response.status_code == 201, response.text
    return int(response.json()["case_id"])


def _page(server: LiveServer, who: str) -> httpx.Client:
    token = server.tokens[who]
    return httpx.Client(
        base_url=server.url,
        cookies={SESSION_COOKIE: token},
        headers={CSRF_HEADER: csrf_token_for(token)},
        timeout=30,
    )


def _box(box: tuple[float, float, float, float], name: str, op: str) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "class_name": name, "op": op}


def _yolo_line(cls: int, box: tuple[float, float, float, float], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    return (
        f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
    )


def _export(server: LiveServer, out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    settings = server.services.settings
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", settings.database_url)
    return main(
        ["dataset", "from-reviews", "--out", str(out), "--config", str(SITE), "--recipe", str(RECIPE), *extra]
    )


def test_review_decisions_become_a_camera_split_yolo_dataset(
    make_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    server: LiveServer = make_server(db_url, settings={"site_config": SITE})
    frames = _frames()
    # name, frame, camera, object kind, box, position, when
    sent = [
        ("r-bus", "bus", "cam-a", "bus", BUS_BOX, (LAT, LON), "2026-11-20T09:00:00+08:00"),
        ("r-bus-2", "bus_again", "cam-a", "bus", BUS_BOX, (LAT + 0.00002, LON), "2026-11-23T09:00:00+08:00"),
        (
            "r-false",
            "bus_flipped",
            "cam-b",
            "car",
            FALSE_BOX,
            (LAT + 0.002, LON),
            "2026-11-20T10:00:00+08:00",
        ),
        (
            "r-people",
            "zidane",
            "cam-c",
            "person",
            PEOPLE_BOX,
            (LAT + 0.004, LON),
            "2026-11-20T11:00:00+08:00",
        ),
        (
            "r-undone",
            "zidane_flipped",
            "cam-d",
            "person",
            UNDONE_BOX,
            (LAT + 0.006, LON),
            "2026-11-20T12:00:00+08:00",
        ),
    ]
    with server.client("admin") as device:  # a device key would stand for its own camera
        bus, bus_again, false, people, undone = (
            _post(
                device, name, frames[frame], camera=camera, kind=kind, box=box, position=position, when=when
            )
            for name, frame, camera, kind, box, position, when in sent
        )
    assert len({bus, bus_again, false, people, undone}) == 5

    with server.client("operator") as op, _page(server, "operator") as page:
        # confirm and reject over the API, confirm over the review page
        assert op.post(f"/api/cases/{bus}/transitions", json={"to": "filed"}).status_code == 200
        rejected = op.post(
            f"/api/cases/{false}/transitions", json={"to": "rejected", "reason": "false_positive"}
        )
        assert rejected.status_code == 200, rejected.text
        assert page.post(f"/review/{bus_again}/decision", data={"decision": "confirm"}).status_code == 200
        # recategorise on the review page, then boxes over the API
        assert page.post(f"/review/{people}/category", data={"category": "street_vending"}).status_code == 200

        bad = op.post(
            f"/api/cases/{people}/boxes", json={"boxes": [_box((700, 30, 1300, 700), "person", "add")]}
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "boxes[0].x1", bad.text
        assert "1280" in bad.json()["detail"]  # the frame's width, read from the stored image
        speck = op.post(
            f"/api/cases/{people}/boxes", json={"boxes": [_box((100, 100, 100.0001, 140), "person", "add")]}
        )
        assert speck.status_code == 422 and speck.json()["errors"][0]["field"] == "boxes[0].x1", speck.text
        not_a_number = op.post(
            f"/api/cases/{people}/boxes",
            content=json.dumps({"boxes": [{**_box(TIE, "person", "add"), "x2": float("nan")}]}),
            headers={"Content-Type": "application/json"},
        )
        assert not_a_number.status_code == 422 and "finite" in not_a_number.text, not_a_number.text
        unknown = op.post(
            f"/api/cases/{people}/boxes",
            json={"boxes": [_box(TIE, "person", "add"), _box(TIE, "stall", "add")]},
        )
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "boxes[1].class_name"
        assert "'stall'" in unknown.json()["detail"]
        nothing = op.post(
            f"/api/cases/{people}/boxes", json={"boxes": [_box((0, 0, 50, 50), "person", "remove")]}
        )
        assert nothing.status_code == 422 and nothing.json()["errors"][0]["field"] == "boxes[0]"
        assert (
            op.post(f"/api/cases/{people}/boxes", json={"boxes": [_box(TIE, "tie", "add")]}).status_code
            == 422
        )
        schema = op.post(
            f"/api/cases/{people}/boxes", json={"boxes": [{**_box(TIE, "person", "add"), "op": "move"}]}
        )
        assert schema.status_code == 422
        assert (
            op.post("/api/cases/999999/boxes", json={"boxes": [_box(TIE, "person", "add")]}).status_code
            == 404
        )
        broken = op.post(
            f"/api/cases/{people}/boxes", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code in (400, 422), broken.text
        with server.client("viewer") as viewer:
            assert (
                viewer.post(
                    f"/api/cases/{people}/boxes", json={"boxes": [_box(TIE, "person", "add")]}
                ).status_code
                == 403
            )

        done = op.post(
            f"/api/cases/{people}/boxes",
            json={
                "boxes": [
                    _box(PERSON_A, "person", "correct"),
                    _box(PERSON_B, "person", "add"),
                    _box(TIE, "chair", "add"),
                ]
            },
        )
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["width"], body["height"]) == (1280, 720)
        assert [b["source"] for b in body["boxes"]] == ["operator", "operator", "operator"]
        removed = op.post(f"/api/cases/{people}/boxes", json={"boxes": [_box(TIE, "chair", "remove")]})
        assert removed.status_code == 200 and len(removed.json()["boxes"]) == 2, removed.text
        assert op.post(f"/api/cases/{people}/transitions", json={"to": "filed"}).status_code == 200

        # rejected as false, undone, then confirmed: a positive
        reject = page.post(
            f"/review/{undone}/decision", data={"decision": "reject", "reason": "false_positive"}
        )
        assert reject.status_code == 200
        assert page.post(f"/review/{undone}/undo").status_code == 200
        assert page.post(f"/review/{undone}/decision", data={"decision": "confirm"}).status_code == 200

    with server.services.factory() as session:
        whats = [(label.case_id, label.what) for label in session.query(ReviewLabel).order_by(ReviewLabel.id)]
        assert whats == [
            (bus, "confirm"),
            (false, "reject_false"),
            (bus_again, "confirm"),
            (people, "recategorise"),
            (people, "box"),
            (people, "box"),
            (people, "confirm"),
            (undone, "reject_false"),
            (undone, "undo"),
            (undone, "confirm"),
        ]
        first = session.query(ReviewLabel).order_by(ReviewLabel.id).first()
        assert first is not None and first.camera_id == "cam-a" and first.frame_index == 1200
        assert first.frame_sha256 is not None and first.lat == pytest.approx(LAT)
        boxes_entries = session.query(CustodyEntry).filter(CustodyEntry.action == "boxes_labelled").count()
        assert boxes_entries == 2
    with server.services.factory() as session:
        checked, problems = custody.verify_all(session)
        assert problems == [] and checked >= 5
    with server.services.factory() as session:
        assert audit(session).problems == []  # the boxes_labelled entries name raw frames of their cases

    out = tmp_path / "reviews"
    assert _export(server, out, monkeypatch, "--since", "2020-01-01") == 0
    printed = capsys.readouterr().out
    assert "duplicates dropped (same camera and place, near-identical frame): 1" in printed

    names = load_recipe(RECIPE).recipe.classes
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(names)) and data["train"] == "images/train"
    manifest = json.loads((out / "reviews.json").read_text())
    images = {item["camera_id"]: item for item in manifest["images"]}
    assert sorted(images) == ["cam-a", "cam-b", "cam-c", "cam-d"]  # one of cam-a's two frames: duplicates
    assert len(manifest["images"]) == 4
    # the camera split: no camera in both; at least one in each
    split = camera_split(["cam-a", "cam-b", "cam-c", "cam-d"])
    assert {c: item["split"] for c, item in images.items()} == split
    assert set(split.values()) == {"train", "val"}
    for camera, item in images.items():
        image = out / item["image"]
        assert image.is_file() and image.parent.name == split[camera]
        assert (out / "labels" / split[camera] / f"{image.stem}.txt").is_file()
    for s in ("train", "val"):
        stems = {
            p.stem.split("-", 2)[0] + "-" + p.stem.split("-", 2)[1] for p in (out / "images" / s).iterdir()
        }
        assert stems == {c for c, v in split.items() if v == s}

    def label_lines(camera: str) -> list[str]:
        item = images[camera]
        stem = Path(item["image"]).stem
        return (out / "labels" / item["split"] / f"{stem}.txt").read_text().splitlines()

    cls = {n: i for i, n in enumerate(names)}
    # cam-a: the bus confirmed (the later of the two near-identical frames is kept)
    assert label_lines("cam-a") == [_yolo_line(cls["bus"], BUS_BOX, 810, 1080)]
    assert images["cam-a"]["case_id"] == bus_again
    # cam-b: rejected as false: a negative, the detection listed as rejected, not labelled
    assert label_lines("cam-b") == []
    assert images["cam-b"]["rejected"] == [_yolo_line(cls["car"], FALSE_BOX, 810, 1080)]
    # cam-c: the corrected box replaces the detection, the added one kept, the removed one dropped
    assert label_lines("cam-c") == [
        _yolo_line(cls["person"], PERSON_A, 1280, 720),
        _yolo_line(cls["person"], PERSON_B, 1280, 720),
    ]
    # cam-d: rejected, undone, confirmed: the detection is a positive
    assert label_lines("cam-d") == [_yolo_line(cls["person"], UNDONE_BOX, 1280, 720)]

    # a rerun into the same folder replaces the export; errors are one line each, exit status 1
    assert _export(server, out, monkeypatch, "--since", "2020-01-01", "--until", "2100-01-01") == 0
    capsys.readouterr()
    assert _export(server, out, monkeypatch, "--since", "yesterday") == 1
    assert "--since: 'yesterday' is not a date" in capsys.readouterr().err
    assert (
        _export(server, tmp_path / "none", monkeypatch, "--since", "2099-01-01", "--until", "2099-01-02") == 1
    )
    assert "no reviewed frames" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _export(server, blocker, monkeypatch, "--since", "2020-01-01") == 1
    err = capsys.readouterr().err
    assert "not a folder" in err, err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _export(server, foreign, monkeypatch, "--since", "2020-01-01") == 1
    assert "not empty" in capsys.readouterr().err

    # a class the recipe lacks (operators drew stalls): kept as a new class after the recipe's
    assert _export(server, out, monkeypatch, "--since", "2020-01-01", "--new-class", "car") == 1
    assert "--new-class: ['car'] must be new" in capsys.readouterr().err
    assert _export(server, out, monkeypatch, "--since", "2020-01-01", "--new-class", "bad name/../x") == 1
    assert "--new-class: 'bad name/../x': a class name is a letter" in capsys.readouterr().err
    assert _export(server, out, monkeypatch, "--since", "2020-01-01", "--new-class", "stall") == 0
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == dict(enumerate([*names, "stall"]))


def test_two_cases_on_one_frame_are_one_image_with_both_decisions(tmp_path: Path) -> None:
    """Two objects in one picture are two cases with the same raw frame: the export writes that frame
    once, with every box either case confirmed, and leaves out of its labels only what was rejected."""
    from datetime import UTC, datetime

    from detect.model.from_reviews import ReviewBox, ReviewFrame, write_dataset

    frames = _frames()
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in frames.items()}
    when = datetime(2026, 11, 20, 9, tzinfo=UTC)

    def review(case: int, name: str, labels=(), rejected=(), decision="confirm") -> ReviewFrame:  # type: ignore[no-untyped-def]
        return ReviewFrame(
            case_id=case,
            sighting_id=case * 10,
            camera_id="cam-1",
            frame_sha256=sha[name],
            lat=LAT,
            lon=LON,
            decided_at=when,
            decisions=(decision,),
            labels=tuple(ReviewBox(*box, class_name=kind) for kind, box in labels),
            rejected=tuple(ReviewBox(*box, class_name=kind) for kind, box in rejected),
        )

    reviews = [
        review(1, "zidane", labels=[("person", PERSON_A)]),
        review(2, "zidane", labels=[("person", PERSON_B)]),
        review(3, "bus", labels=[("bus", BUS_BOX)]),
        review(4, "bus", rejected=[("car", FALSE_BOX)], decision="reject_false"),
    ]
    names = ["person", "car", "bus"]
    summary = write_dataset(
        reviews,
        read_image=lambda s: next(d for n, d in frames.items() if sha[n] == s),
        class_names=names,
        out=tmp_path,
    )
    labels = {p.stem: p.read_text().splitlines() for p in (tmp_path / "labels" / "train").glob("*.txt")}
    assert len(labels) == 2 and summary.frames["train"] == 2 and summary.boxes["train"]["person"] == 2
    assert sorted(labels[f"cam-1-{sha['zidane'][:16]}"]) == sorted(
        [_yolo_line(0, PERSON_A, 1280, 720), _yolo_line(0, PERSON_B, 1280, 720)]
    )
    assert labels[f"cam-1-{sha['bus'][:16]}"] == [_yolo_line(2, BUS_BOX, 810, 1080)]
    listed = json.loads((tmp_path / "reviews.json").read_text())["images"]
    bus = next(i for i in listed if i["frame_sha256"] == sha["bus"])
    assert sorted(bus["decisions"]) == ["confirm", "reject_false"] and len(bus["rejected"]) == 1
    assert {(bus["case_id"], *[a["case_id"] for a in bus["also"]])} == {(3, 4)}


@pytest.mark.parametrize(
    ("cameras", "expected"),
    [
        (["only"], {"only": "train"}),  # one camera: no val split (the summary warns)
        (["cam-a"], {"cam-a": "train"}),  # one camera whose hash alone would put it in val
        (["a", "b"], None),  # two: one each
        ([f"cam-{i}" for i in range(12)], None),
    ],
)
def test_the_camera_split_keeps_a_camera_on_one_side(
    cameras: list[str], expected: dict[str, str] | None
) -> None:
    split = camera_split(cameras)
    assert split == camera_split(list(reversed(cameras)))  # deterministic, order-free
    if expected is not None:
        assert split == expected
    else:
        assert set(split.values()) == {"train", "val"}


def _tampered_audit(server: LiveServer, case_id: int) -> list[str]:
    with server.services.factory() as session:
        custody.append(
            session, case_id=case_id, actor="user:mallory", action=BOXES_LABELLED, detail={"frame": "0" * 64}
        )
        session.commit()
    with server.services.factory() as session:
        return audit(session).problems


def test_audit_names_box_labels_on_a_frame_that_is_not_the_case_s(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("admin") as admin:
        case_id = _post(
            admin, "r-audit", _frames()["bus"], camera="cam-a", kind="bus", box=BUS_BOX,
            position=(LAT, LON), when="2026-11-20T09:00:00+08:00",
        )  # fmt: skip
    problems = _tampered_audit(server, case_id)
    assert len(problems) == 1 and f"labels boxes on blob {'0' * 64}" in problems[0], problems


@pytest.mark.parametrize(
    ("edits", "verdict", "rejected"),
    [
        ([], "negative", True),  # rejected as false
        ([("remove", (10, 10, 100, 100))], None, True),  # the detection removed: the same hard negative
        ([("remove", (10, 10, 100, 100))], "positive", True),  # removed, then the case filed anyway
        ([("correct", (12, 12, 98, 98))], "negative", False),  # corrected: the object is there
        ([("add", (200, 200, 300, 300)), ("remove", (200, 200, 300, 300))], "positive", False),
    ],
    ids=["rejected", "removed", "removed-then-filed", "corrected", "added-then-removed"],
)
def test_which_detection_is_a_hard_negative(edits, verdict, rejected) -> None:  # type: ignore[no-untyped-def]
    from api.cases.review_labels import BoxEdit, LabelBox, _FrameState

    detection = LabelBox(10, 10, 100, 100, "car")
    state = _FrameState(detection=detection, verdict=verdict)
    for op, (x1, y1, x2, y2) in edits:
        state.apply(BoxEdit(op, LabelBox(x1, y1, x2, y2, "car")))
    assert state.rejected() == ([detection] if rejected else [])
    if rejected:
        assert detection not in state.labels()


# --- the export's options: named errors, and nothing created -----------------------------------------


def test_until_the_last_date_is_the_end_of_time() -> None:
    from datetime import datetime

    from api.cli.reviews import parse_when

    assert parse_when("9999-12-31", option="--until", end_of_day=True) == datetime.max
    assert parse_when("2026-01-31", option="--until", end_of_day=True) == datetime(2026, 2, 1)


def test_a_time_out_of_range_in_utc_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        ["dataset", "from-reviews", "--since", "0001-01-01T00:00+01:00", "--out", str(tmp_path / "x")]
    )
    assert code == 1
    assert "error: --since: '0001-01-01T00:00+01:00' is out of range in UTC" in capsys.readouterr().err


def test_an_export_never_creates_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    args = ["dataset", "from-reviews", "--since", "2026-01-01", "--until", "9999-12-31"]
    code = main([*args, "--out", str(tmp_path / "out"), "--database-url", f"sqlite:///{missing}"])
    assert code == 1
    assert f"error: database not found: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "out").exists()


def test_the_first_correction_on_a_frame_knows_its_detection(make_server: Any, sqlite_url: str) -> None:
    """Before anyone decided on a case, its frame's detection is there to remove, and a box added
    is answered with the detection beside it (as every later answer and the case page show it)."""
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("operator") as operator:
        ids = [
            _post(
                operator,
                f"r-first-{i}",
                raw,
                camera=f"cam-first-{i}",
                kind="bus",
                box=BUS_BOX,
                position=(LAT + i * 0.01, LON),
                when="2026-11-20T09:00:00+08:00",
            )
            for i, raw in enumerate((_frames()["bus"], _frames()["bus_flipped"]))
        ]
        added = operator.post(f"/api/cases/{ids[0]}/boxes", json={"boxes": [_box(TIE, "person", "add")]})
        assert added.status_code == 200, added.text
        assert [(b["box"]["class_name"], b["source"]) for b in added.json()["boxes"]] == [
            ("bus", "detection"),
            ("person", "operator"),
        ]
        removed = operator.post(
            f"/api/cases/{ids[1]}/boxes", json={"boxes": [_box(BUS_BOX, "bus", "remove")]}
        )
        assert removed.status_code == 200, removed.text
        assert removed.json()["boxes"] == []


# --- the case page's box editor ----------------------------------------------------------------------


def _editor_boxes(html: str) -> list[tuple[str, str, str]]:
    """(x1, class name, source) of each labelled box the case page's editor lists."""
    return re.findall(r'<li data-x1="([^"]+)"[^>]* data-class-name="([^"]+)" data-source="([^"]+)"', html)


def test_the_case_page_shows_the_labelled_boxes_to_those_who_may_label(
    make_server: Any, sqlite_url: str
) -> None:
    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    with server.client("admin") as admin:
        case_id = _post(
            admin, "r-page", _frames()["bus"], camera="cam-a", kind="bus", box=BUS_BOX,
            position=(LAT, LON), when="2026-11-20T09:00:00+08:00",
        )  # fmt: skip
    with server.browser("operator") as operator:
        html = operator.get(f"/cases/{case_id}").text
        assert _editor_boxes(html) == [("22.0", "bus", "detection")]  # before any label: the detection
        assert '<option value="dining table">Table</option>' in html  # the kind's name in the page's language
        fixed = operator.post(
            f"/api/cases/{case_id}/boxes", json={"boxes": [_box(PERSON_B, "bus", "correct")]}
        )
        assert fixed.status_code == 200, fixed.text
        added = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(TIE, "person", "add")]})
        assert added.status_code == 200, added.text
        html = operator.get(f"/cases/{case_id}").text
        assert _editor_boxes(html) == [("123.0", "bus", "operator"), ("360.0", "person", "operator")]
    with server.browser("admin") as admin_page:
        assert len(_editor_boxes(admin_page.get(f"/cases/{case_id}").text)) == 2
    with server.browser("viewer") as viewer:
        html = viewer.get(f"/cases/{case_id}").text
        assert "box-editor" not in html and "boxes.js" not in html and _editor_boxes(html) == []


def test_an_unreadable_site_config_leaves_the_page_without_the_editor_saying_why(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "site.yaml"
    broken.write_text("kinds: [not, a, map]\n", encoding="utf-8")
    server: LiveServer = make_server(sqlite_url, settings={"site_config": broken})
    with server.client("admin") as admin:
        case_id = _post(
            admin, "r-broken", _frames()["bus"], camera="cam-a", kind="bus", box=BUS_BOX,
            position=(LAT, LON), when="2026-11-20T09:00:00+08:00",
        )  # fmt: skip
    with server.browser("operator") as operator:
        page = operator.get(f"/cases/{case_id}")
        assert page.status_code == 200, page.text[:300]
        assert "the site config cannot be read" in page.text and "box-editor" not in page.text
        answer = operator.post(f"/api/cases/{case_id}/boxes", json={"boxes": [_box(TIE, "person", "add")]})
        assert answer.status_code == 503 and answer.json()["errors"][0]["field"] == "site config", answer.text


def test_with_no_site_config_the_page_says_none_is_loaded(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """`gridpatrol serve` run from another folder finds no configs/site.yaml: the case page had no box
    editor and no word why (now one line, in the page's language, naming how the service is given one;
    serve logs where it looked)."""
    from api.http.i18n import catalogue

    server: LiveServer = make_server(sqlite_url, settings={"site_config": tmp_path / "configs" / "site.yaml"})
    with server.client("admin") as admin:
        case_id = _post(
            admin, "r-none", _frames()["bus"], camera="cam-a", kind="bus", box=BUS_BOX,
            position=(LAT, LON), when="2026-11-20T09:00:00+08:00",
        )  # fmt: skip
    for lang in ("en", "zh-CN"):
        cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": lang}
        with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as operator:
            page = operator.get(f"/cases/{case_id}")
        assert page.status_code == 200, page.text[:300]
        line = page.text.split('id="labelling-error">')[1].split("</p>")[0]
        assert html.unescape(line) == catalogue(lang)["cases.boxes.no_site_config"]
        assert "--config FILE" in line and "GRIDPATROL_SITE_CONFIG" in line and "box-editor" not in page.text

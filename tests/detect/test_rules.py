"""Rule tables over scripted, already-tracked detections (no model)."""

from datetime import datetime

import pytest

from detect.rules import RuleEngine, box_gap, incident_id, iou
from tests.detect.rule_fixtures import car, frame, make_config, timeline

IN_ZONE = (100.0, 400.0, 300.0, 550.0)  # bottom-centre (200, 550): inside the left half
OUT_ZONE = (700.0, 400.0, 900.0, 550.0)  # bottom-centre (800, 550): right half
ON_EDGE = (400.0, 400.0, 600.0, 550.0)  # bottom-centre (500, 550): on the zone's right edge


def run(engine, frames, boxes_per_frame, static=True):
    fired, closed = [], []
    for f, dets in zip(frames, boxes_per_frame, strict=True):
        result = engine.step(f, dets, camera_static=static)
        fired += result.fired
        closed += result.closed
    return fired, closed


def engine(**kwargs):
    config = make_config(**kwargs)
    return RuleEngine(config, config.cameras[0], "cam")


@pytest.mark.parametrize(
    ("box", "fires"),
    [(IN_ZONE, True), (OUT_ZONE, False), (ON_EDGE, True)],
    ids=["inside", "outside", "on-edge"],
)
def test_parked_car_fires_only_in_zone(box, fires):
    e = engine()
    frames = timeline(range(0, 12))
    fired, _ = run(e, frames, [[car(box)]] * len(frames))
    assert len(fired) == (1 if fires else 0)


@pytest.mark.parametrize(
    ("last_ts", "fires"),
    [(9.0, False), (9.8, False), (10.0, True), (10.2, True)],
    ids=["9s", "9.8s-just-under", "10s-exactly", "10.2s-just-over"],
)
def test_dwell_threshold(last_ts, fires):
    e = engine()
    times = [t / 5 for t in range(0, int(last_ts * 5) + 1)]  # 5 fps
    frames = timeline(times)
    fired, _ = run(e, frames, [[car(IN_ZONE)]] * len(frames))
    assert len(fired) == (1 if fires else 0)
    if fires:
        assert fired[0].fired_ts == pytest.approx(10.0)


def test_fires_once_per_object_and_closes_after_grace():
    e = engine(grace_s=5)
    frames = timeline(range(0, 31))
    dets = [[car(IN_ZONE)] if t <= 20 else [] for t in range(0, 31)]
    fired, closed = run(e, frames, dets)
    assert len(fired) == 1
    assert len(closed) == 1 and closed[0] is fired[0]
    assert closed[0].last_ts == 20 and closed[0].closed
    assert e.finish() == []


@pytest.mark.parametrize(
    ("gap_s", "new_track", "incidents"),
    [
        (4, False, 1),  # tracker kept the id through a short gap
        (8, True, 1),  # new track id at the same place within grace: same violation
        (12, True, 2),  # beyond grace: a new violation
    ],
)
def test_lost_and_found(gap_s, new_track, incidents):
    e = engine(grace_s=10)
    before = list(range(0, 15))  # fires at t=10
    after_start = 14 + gap_s
    after = list(range(after_start, after_start + 15))
    frames = timeline(before + after)
    dets = [[car(IN_ZONE, track_id=1)]] * len(before) + [
        [car((102.0, 401.0, 301.0, 552.0), track_id=7 if new_track else 1)]
    ] * len(after)
    fired, closed = run(e, frames, dets)
    everything = {v.id for v in fired} | {v.id for v in closed} | {v.id for v in e.finish()}
    assert len(everything) == incidents


def test_flicker_does_not_reset_dwell():
    e = engine(grace_s=10)
    times = list(range(0, 12))
    dets = [[car(IN_ZONE, track_id=t)] if t % 3 else [] for t in times]  # new id after each dropout
    fired, _ = run(e, timeline(times), dets)
    assert len(fired) == 1
    assert fired[0].first_seen_ts == 1


def test_moving_object_does_not_fire():
    e = engine()
    times = list(range(0, 20))
    dets = [[car((100.0 + 3 * t, 400.0 + 40 * t / 4, 300.0 + 3 * t, 550.0 + 40 * t))] for t in times]
    fired, _ = run(e, timeline(times), dets)
    assert fired == []


def test_moving_camera_does_not_fire():
    e = engine()
    frames = timeline(range(0, 20))
    fired, _ = run(e, frames, [[car(IN_ZONE)]] * len(frames), static=False)
    assert fired == []


PARKING = {"kinds": ["car"], "zone_kind": "no_parking", "min_dwell_s": 10}
VENDING = {"kinds": ["umbrella"], "zone_kind": "no_vending", "min_dwell_s": 10}
DEBRIS = {"kinds": ["garbage"], "zone_kind": "no_dumping", "min_dwell_s": 10}
NO_PARKING = {"id": "p", "kind": "no_parking", "points_norm": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
STILL = {"require_static_camera": False}


@pytest.mark.parametrize(
    ("categories", "zones", "needed"),
    [
        ({"parking": PARKING}, [NO_PARKING], True),
        ({"parking": PARKING | STILL}, [NO_PARKING], False),  # the rule does not ask
        ({"vending": VENDING}, [NO_PARKING], False),  # no zone of its kind on this camera
        ({"debris": DEBRIS | {"anywhere": True}}, [NO_PARKING], True),  # applies without a zone
        ({"parking": PARKING | STILL, "vending": VENDING}, [NO_PARKING], False),
        (
            {"parking": PARKING | STILL, "debris": DEBRIS},
            [NO_PARKING, NO_PARKING | {"id": "d", "kind": "no_dumping"}],
            True,
        ),
        ({"parking": PARKING}, [], False),
    ],
)
def test_camera_motion_is_needed_only_where_a_rule_can_read_it(categories, zones, needed):
    """The pipeline measures camera motion (optical flow) only when a step can read camera_static."""
    assert engine(categories=categories, zones=zones).needs_camera_motion is needed


@pytest.mark.parametrize(("score", "fires"), [(0.39, False), (0.41, True)])
def test_median_confidence_must_hold(score, fires):
    e = engine()
    frames = timeline(range(0, 12))
    # one lucky frame does not carry a weak track
    dets = [[car(IN_ZONE, score=0.95 if i == 0 else score)] for i in range(12)]
    fired, _ = run(e, frames, dets)
    assert bool(fired) is fires


def test_min_observations():
    e = engine()
    frames = [frame(0, 0), frame(11, 1)]  # dwell reached but only two sightings
    fired, _ = run(e, frames, [[car(IN_ZONE)], [car(IN_ZONE)]])
    assert fired == []


@pytest.mark.parametrize(("hour", "fires"), [(12, True), (23, False)], ids=["inside-hours", "outside-hours"])
def test_active_hours(hour, fires):
    zones = [
        {
            "id": "left",
            "kind": "no_parking",
            "points_norm": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
            "active_hours": ["07:00-22:00"],
        }
    ]
    e = engine(zones=zones)
    frames = [frame(t, t, datetime(2026, 11, 29, hour, 0, t)) for t in range(12)]
    fired, _ = run(e, frames, [[car(IN_ZONE)]] * 12)
    assert bool(fired) is fires


def test_duplicate_boxes_of_one_object_are_one_violation():
    e = engine()
    frames = timeline(range(0, 12))
    dets = [[car(IN_ZONE, track_id=1), car((101.0, 401.0, 301.0, 551.0), track_id=2, kind="truck")]] * 12
    fired, _ = run(e, frames, dets)
    assert len(fired) == 1
    assert fired[0].track_ids == [1, 2]


def test_two_cars_side_by_side_are_two_violations():
    e = engine()
    frames = timeline(range(0, 12))
    dets = [[car((0.0, 400.0, 180.0, 550.0), track_id=1), car((200.0, 400.0, 380.0, 550.0), track_id=2)]] * 12
    fired, _ = run(e, frames, dets)
    assert len(fired) == 2


VENDING = {
    "street_vending": {
        "kinds": ["umbrella", "table", "chair"],
        "zone_kind": "no_vending",
        "min_dwell_s": 10,
        "min_observations": 3,
        "min_cues": 2,
        "cue_gap_norm": 0.05,
    }
}
VENDING_ZONE = [{"id": "pave", "kind": "no_vending", "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}]


def cue(kind, box, track_id):
    return car(box, track_id=track_id, kind=kind, score=0.7)


@pytest.mark.parametrize(
    ("cues", "stalls", "members"),
    [
        ([("stall", (100.0, 100.0, 300.0, 400.0), 1)], 1, 1),  # the model's stall class: a stall alone
        ([("umbrella", (100.0, 100.0, 300.0, 300.0), 1)], 0, 0),  # a lone cue still is not
        ([("stall", (100.0, 100.0, 300.0, 400.0), 1), ("chair", (310.0, 320.0, 360.0, 400.0), 2)], 1, 2),
        ([("stall", (100.0, 100.0, 300.0, 400.0), 1), ("stall", (700.0, 100.0, 900.0, 400.0), 2)], 2, 1),
    ],
    ids=["stall-class", "lone-cue", "stall-and-its-chair", "two-stalls-apart"],
)
def test_a_stall_class_fires_alone_and_cues_fall_back_to_the_cluster(cues, stalls, members):
    categories = {"street_vending": {**VENDING["street_vending"], "whole_kinds": ["stall"]}}
    categories["street_vending"]["kinds"] = ["stall", "umbrella", "table", "chair"]
    config = make_config(zones=VENDING_ZONE, categories=categories, extra_kinds={"stall": "stall"})
    e = RuleEngine(config, config.cameras[0], "cam")
    frames = timeline(range(0, 12))
    fired, _ = run(e, frames, [[cue(k, b, t) for k, b, t in cues]] * 12)
    assert len(fired) == stalls
    assert all(v.kind == "stall" and len(v.members) == members for v in fired)


def test_whole_kinds_must_be_kinds_of_the_category():
    from detect.config import ConfigError

    categories = {"street_vending": {**VENDING["street_vending"], "whole_kinds": ["stall"]}}
    with pytest.raises(ConfigError, match=r"whole_kinds: \['stall'\] are not in its kinds"):
        make_config(zones=VENDING_ZONE, categories=categories)


@pytest.mark.parametrize(
    ("cues", "stalls"),
    [
        ([("umbrella", (100.0, 100.0, 300.0, 300.0), 1)], 0),  # one cue is not a stall
        ([("umbrella", (100.0, 100.0, 300.0, 300.0), 1), ("table", (120.0, 280.0, 280.0, 400.0), 2)], 1),
        ([("umbrella", (100.0, 100.0, 300.0, 300.0), 1), ("table", (700.0, 280.0, 900.0, 400.0), 2)], 0),
        (
            [
                ("umbrella", (100.0, 100.0, 300.0, 300.0), 1),
                ("table", (120.0, 280.0, 280.0, 400.0), 2),
                ("chair", (290.0, 320.0, 340.0, 400.0), 3),
            ],
            1,
        ),
    ],
    ids=["single-cue", "umbrella+table", "far-apart", "three-cues"],
)
def test_stall_needs_several_cues_together(cues, stalls):
    e = engine(zones=VENDING_ZONE, categories=VENDING)
    frames = timeline(range(0, 12))
    dets = [[cue(k, b, t) for k, b, t in cues]] * 12
    fired, _ = run(e, frames, dets)
    assert len(fired) == stalls
    if stalls:
        assert fired[0].kind == "stall" and len(fired[0].members) == len(cues)
        done = e.finish()
        assert done == fired


def test_sightings_are_the_objects_timed_and_the_stalls_not_their_cues():
    e = engine(zones=VENDING_ZONE, categories=VENDING)
    umbrella, table = (
        cue("umbrella", (100.0, 100.0, 300.0, 300.0), 1),
        cue("table", (120.0, 280.0, 280.0, 400.0), 2),
    )
    # the table is seen first: it leads the stall
    run(e, timeline(range(0, 3)), [[table]] * 3)
    assert [v.kind for v in e.sightings()] == ["table"]
    fired, _ = run(e, timeline(range(3, 15)), [[umbrella, table]] * 12)
    assert e.sightings() == fired and [m.kind for m in fired[0].members] == ["table", "umbrella"]
    assert fired[0].first_seen_ts == fired[0].members[0].first_seen_ts == 0.0
    e.finish()
    assert e.sightings() == []


def test_geometry_helpers():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_gap((0, 0, 10, 10), (13, 14, 20, 20)) == 5.0
    assert box_gap((0, 0, 10, 10), (5, 5, 20, 20)) == 0.0


def test_incident_id_is_deterministic():
    a = incident_id("cam", "illegal_parking", 1.0, (1.0, 2.0, 3.0, 4.0))
    assert a == incident_id("cam", "illegal_parking", 1.0, (1.0, 2.0, 3.0, 4.0))
    assert a != incident_id("cam", "illegal_parking", 1.2, (1.0, 2.0, 3.0, 4.0))
    assert a != incident_id("cam2", "illegal_parking", 1.0, (1.0, 2.0, 3.0, 4.0))


def test_a_salt_tells_apart_sessions_whose_clocks_start_again() -> None:
    """A live stream opened again starts its clock at 0: the same box at the same ts is another
    incident (detect_footage salts a live session's ids with when it was opened); footage has none."""
    plain = incident_id("cam", "illegal_parking", 0.0, (1.0, 2.0, 3.0, 4.0))
    assert plain == incident_id("cam", "illegal_parking", 0.0, (1.0, 2.0, 3.0, 4.0), "")
    first = incident_id("cam", "illegal_parking", 0.0, (1.0, 2.0, 3.0, 4.0), "2026-12-03T10:00:00+00:00")
    again = incident_id("cam", "illegal_parking", 0.0, (1.0, 2.0, 3.0, 4.0), "2026-12-03T10:05:00+00:00")
    assert len({plain, first, again}) == 3

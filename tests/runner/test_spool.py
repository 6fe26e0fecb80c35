"""The runner's spool on a real disk: order across restarts, whole items after kill -9, the drop order
when full, the figures for the heartbeat."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from api.runner.spool import IncidentNotSpoolable, Spool, SpoolBusy

REPO = Path(__file__).resolve().parents[2]
LARGE = {"max_bytes": 1 << 30, "max_items": 1_000_000}


def evidence_bytes(seed: str, size: int = 200) -> bytes:
    """`size` bytes that start like a JPEG and differ per seed."""
    block = hashlib.sha256(seed.encode()).digest()
    return (b"\xff\xd8\xff\xe0" + block * (size // 32 + 1))[:size]


def incident(incident_id: str, category: str = "illegal_parking", size: int = 200) -> tuple[dict, list]:
    """An incident's JSON (as detect.values.Incident.to_json() has it) and its two evidence files."""
    files = [
        ("annotated", f"{incident_id}-annotated.jpg", evidence_bytes(incident_id + "a", size)),
        ("crop", f"{incident_id}-crop.jpg", evidence_bytes(incident_id + "c", size)),
    ]
    data = {
        "id": incident_id,
        "category": category,
        "source_id": "cam-1",
        "evidence": [
            {
                "role": role,
                "path": name,
                "sha256": hashlib.sha256(body).hexdigest(),
                "media_type": "image/jpeg",
            }
            for role, name, body in files
        ],
    }
    return data, files


def put(spool: Spool, incident_id: str, category: str = "illegal_parking", size: int = 200) -> Any:
    return spool.put(*incident(incident_id, category, size))


def test_items_come_out_in_arrival_order_across_restarts(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for i in range(5):
            put(spool, f"a{i}")
        spool.ack(spool.oldest())  # type: ignore[arg-type]
        assert [item.incident_id for item in spool] == ["a1", "a2", "a3", "a4"]
    with Spool(tmp_path / "spool", **LARGE) as spool:
        assert [item.incident_id for item in spool] == ["a1", "a2", "a3", "a4"]
        item = put(spool, "b0")
        assert item.seq == 6  # numbering runs on from the highest present
        assert [i.incident_id for i in spool] == ["a1", "a2", "a3", "a4", "b0"]
        assert [i.seq for i in spool] == sorted(i.seq for i in spool)


def test_an_item_is_whole_on_disk_and_loads_as_given(tmp_path: Path) -> None:
    source = tmp_path / "crop.jpg"
    data, files = incident("x1")
    source.write_bytes(files[1][2])
    with Spool(tmp_path / "spool", **LARGE) as spool:
        item = spool.put(data, [files[0], ("crop", "x1-crop.jpg", source)])  # bytes and a path
        assert item is not None
        folder = tmp_path / "spool" / "items" / item.name
        assert sorted(p.name for p in folder.iterdir()) == ["evidence-0", "evidence-1", "meta.json"]
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["incident"] == data and meta["evidence_dropped"] is False
        assert item.bytes == sum(p.stat().st_size for p in folder.iterdir())
        parcel = spool.load(item)
        assert parcel.incident == data
        assert [(f.role, f.filename, f.media_type, f.data) for f in parcel.files] == [
            (role, name, "image/jpeg", files[i][2]) for i, (role, name, _) in enumerate(files)
        ]
        assert list((tmp_path / "spool" / "tmp").iterdir()) == []


def test_files_must_be_those_the_evidence_list_names(tmp_path: Path) -> None:
    data, files = incident("x1")
    with Spool(tmp_path / "spool", **LARGE) as spool:
        with pytest.raises(IncidentNotSpoolable, match=r"files\[1\]: x1-crop.jpg: SHA-256"):
            spool.put(data, [files[0], ("crop", "x1-crop.jpg", b"other bytes")])
        with pytest.raises(IncidentNotSpoolable, match=r"incident.evidence: lists SHA-256"):
            spool.put(data, files[:1])
        with pytest.raises(IncidentNotSpoolable, match=r"incident.id"):
            spool.put(dict(data, id=""), files)
        assert len(spool) == 0
        assert list((tmp_path / "spool" / "tmp").iterdir()) == []


def test_one_process_at_a_time(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE), pytest.raises(SpoolBusy):
        Spool(tmp_path / "spool", **LARGE)
    Spool(tmp_path / "spool", **LARGE).close()  # free again once closed


def test_leftovers_of_a_crash_are_removed_at_open(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    with Spool(root, **LARGE) as spool:
        kept = put(spool, "k1")
    # a put killed half way: its folder in tmp/; a drop killed between meta.json and the files;
    # a reject killed before its rename; an ack killed after its rename
    half = root / "tmp" / "put-0123"
    half.mkdir()
    (half / "evidence-0").write_bytes(b"\xff\xd8 half")
    (root / "tmp" / f"gone-{kept.name}-abcd").mkdir()
    folder = root / "items" / kept.name
    (folder / "meta.json.tmp").write_text("{")
    (folder / "evidence-7").write_bytes(b"a file meta.json no longer lists")
    (folder / "response.json").write_text("{}")
    with Spool(root, **LARGE) as spool:
        assert list((root / "tmp").iterdir()) == []
        assert sorted(p.name for p in folder.iterdir()) == ["evidence-0", "evidence-1", "meta.json"]
        assert [(i.incident_id, i.bytes) for i in spool] == [("k1", kept.bytes)]
        assert spool.state().bytes == kept.bytes


PUTTING_CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from api.runner.spool import Spool

    root, run = sys.argv[1], sys.argv[2]
    spool = Spool(root, max_bytes=1 << 30, max_items=1_000_000)
    i = 0
    while True:
        files = [
            (role, f"{role}.jpg", hashlib.sha256(f"{run}-{i}-{role}".encode()).digest() * (500 + i % 300))
            for role in ("annotated", "crop", "raw")
        ]
        data = {"id": f"r{run}-{i}", "category": "illegal_parking", "evidence": [
            {"role": r, "path": n, "sha256": hashlib.sha256(b).hexdigest()} for r, n, b in files]}
        item = spool.put(data, files)
        sys.stdout.write(f"{item.seq} {item.incident_id}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_kill_9_in_a_loop_of_puts_leaves_only_whole_items(tmp_path: Path) -> None:
    """A child puts items as fast as it can and is killed with SIGKILL at a random moment, four times:
    every put it saw return is there, whole; nothing half written is visible; numbering runs on."""
    root = tmp_path / "spool"
    rng = random.Random(14)
    acked: dict[int, str] = {}
    for run in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", PUTTING_CHILD, str(root), str(run)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not (root / "items").is_dir() or len(os.listdir(root / "items")) < len(acked) + 5:
            assert time.monotonic() < deadline and child.poll() is None, "the child did not put"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        for line in out.splitlines():
            seq, incident_id = line.split()
            acked[int(seq)] = incident_id
        with Spool(root, **LARGE) as spool:
            present = {item.seq: item for item in spool}
            assert list((root / "tmp").iterdir()) == []
            for seq, incident_id in acked.items():
                assert present[seq].incident_id == incident_id, f"put {seq} was lost"
            for item in present.values():
                parcel = spool.load(item)
                listed = {e["sha256"] for e in parcel.incident["evidence"]}
                assert {hashlib.sha256(f.data).hexdigest() for f in parcel.files} == listed
                assert len(parcel.files) == 3
            # each kill may leave one put done but not yet reported, so after run r at most r + 1
            assert 0 <= len(present) - len(acked) <= run + 1
            assert sorted(present) == list(range(1, len(present) + 1))
            highest = max(present)
        assert highest >= 5 * (run + 1)
    with Spool(root, **LARGE) as spool:
        assert put(spool, "after").seq == highest + 1


# --- bounds ---------------------------------------------------------------------------------------

BIG = 20_000  # bytes of evidence per item; an item's meta.json is ~1 KB, so SLACK covers up to 8 items
SLACK = 10_000
CATEGORY = {"D": "piled_debris", "V": "street_vending", "P": "illegal_parking", "X": "graffiti"}

# existing items (oldest first) and the new one, by label: the letter is the category (D piled_debris,
# V street_vending, P illegal_parking: least to most severe; X a category the order does not name);
# bounds: max_items and how many items' evidence fits in max_bytes; afterwards each label is
# E (whole), J (its JSON only: evidence dropped) or - (dropped whole)
DROP_TABLE = [
    ("bytes: the oldest least severe evidence first", "P1 D1 V1 D2", "P2", 10, 4, "E J E E E"),
    (
        "bytes: every category's evidence, least severe first, before any whole incident",
        "P1 D1 V1 D2",
        "P2",
        10,
        2,
        "E J J J E",
    ),
    ("items: the oldest item of the least severe category", "P1 D1 V1 D2", "P2", 4, 10, "E - E E E"),
    ("items: the next category when the least has none", "P1 V1 P2 V2", "P3", 4, 10, "E - E E E"),
    ("items: the new item goes when it is the least severe", "P1 P2 P3", "D1", 3, 10, "E E E -"),
    ("bytes: the new item's own evidence", "P1 P2", "D1", 10, 2, "E E J"),
    ("a category not in the order is the least severe", "P1 X1 D1", "P2", 3, 10, "E - E E"),
    ("both bounds", "P1 D1 V1", "V2", 3, 2, "E - J E"),
    ("no evidence fits: every item's evidence goes, the incidents stay", "P1 V1", "D1", 10, 0, "J J J"),
    ("not even the incidents fit: whole items, least severe first", "P1 V1 P2", "D1", 10, -0.45, "J - J -"),
]


@pytest.mark.parametrize(
    ("existing", "new", "max_items", "evidence_slots", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in DROP_TABLE],
)
def test_drop_order(
    tmp_path: Path, existing: str, new: str, max_items: int, evidence_slots: int, expected: str
) -> None:
    labels = existing.split() + [new]
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for label in existing.split():
            put(spool, label, CATEGORY[label[0]], BIG // 2)
        spool.max_items, spool.max_bytes = max_items, evidence_slots * BIG + SLACK
        result = put(spool, new, CATEGORY[new[0]], BIG // 2)
        kept = {item.incident_id: item for item in spool}
        got = " ".join("-" if x not in kept else "J" if kept[x].evidence_dropped else "E" for x in labels)
        assert got == expected
        assert (result is None) == (expected.split()[-1] == "-")
        for item in kept.values():
            parcel = spool.load(item)
            if item.evidence_dropped:  # sent with an empty evidence list and no files
                assert parcel.files == [] and parcel.incident["evidence"] == []
                assert len(os.listdir(tmp_path / "spool" / "items" / item.name)) == 1
            else:
                assert len(parcel.files) == 2 and len(parcel.incident["evidence"]) == 2
        state = spool.state()
        assert state.evidence_dropped >= expected.count("J")  # and those dropped whole afterwards
        assert state.items_dropped == expected.count("-")
        assert state.items <= max_items and state.bytes <= spool.max_bytes


def test_lower_bounds_are_applied_at_open(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for label in ("P1", "D1", "V1", "D2"):
            put(spool, label, CATEGORY[label[0]])
    with Spool(tmp_path / "spool", max_bytes=1 << 30, max_items=2) as spool:
        assert [item.incident_id for item in spool] == ["P1", "V1"]
        assert spool.state().items_dropped == 2


def test_drops_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path / "spool", max_bytes=1 << 30, max_items=1) as spool:
        put(spool, "D1", "piled_debris")
        put(spool, "P1", "illegal_parking")
    assert "spool full: dropped spooled item 000000000001: incident D1 (piled_debris) whole" in caplog.text


# --- the heartbeat's figures ----------------------------------------------------------------------


def test_state_figures(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", max_bytes=1 << 30, max_items=3) as spool:
        empty = spool.state()
        assert (empty.items, empty.bytes, empty.oldest_age_s, empty.rejected) == (0, 0, None, 0)
        first = put(spool, "D1", "piled_debris")
        second = put(spool, "P1")
        put(spool, "P2")
        put(spool, "P3")  # over max_items: D1 goes whole
        spool.reject(second, {"status": 422, "body": {"detail": "incident.category: bad"}})
        state = spool.state(now=first.queued_at + 100)
        assert state.items == 2
        assert state.bytes == sum(item.bytes for item in spool)
        assert state.bytes == sum(
            p.stat().st_size for p in (tmp_path / "spool" / "items").rglob("*") if p.is_file()
        )
        oldest = spool.oldest()
        assert oldest is not None and oldest.incident_id == "P2"
        assert state.oldest_age_s == pytest.approx(first.queued_at + 100 - oldest.queued_at)
        assert (state.items_dropped, state.evidence_dropped, state.rejected) == (1, 0, 1)
        assert state.bytes_dropped == first.bytes
        assert (state.max_items, state.max_bytes) == (3, 1 << 30)
    rejected = tmp_path / "spool" / "rejected" / second.name
    assert json.loads((rejected / "response.json").read_text())["status"] == 422
    assert (rejected / "meta.json").is_file() and (rejected / "evidence-1").is_file()
    with Spool(tmp_path / "spool", **LARGE) as spool:  # numbering runs on past rejected items too
        assert spool.state().rejected == 1
        assert put(spool, "P4").seq == 5

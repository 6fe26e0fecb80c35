"""An incident refused with a 4xx leaves none of the evidence files it brought behind in the store, and
never removes one a stored case (or another incident of its batch) references: real HTTP, real SQLite,
the real evidence store on disk."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident
from tests.api.test_incident_batch import batch_parts, post_batch


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(sqlite_url, run_webhooks=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(server: LiveServer) -> set[str]:
    """The hashes of every file in the evidence store, and no receiving file left behind."""
    entries = list(server.services.store.entries())
    assert all(entry.complete for entry in entries), entries
    return {entry.name for entry in entries}


def test_a_refused_incident_leaves_no_evidence_file_and_keeps_a_shared_one(server: LiveServer) -> None:
    """Each refusal came after its files were written to the store, and left them there, referenced by
    no case (`gridpatrol evidence orphans` listed them): a file the incident does not list (422), the
    same id sent again with another photo (409), a second file that is no image (422: the first was
    already stored). A file a stored case shares is kept whatever the refusal."""
    filed_photo, filed_crop = jpeg_bytes("filed-a"), jpeg_bytes("filed-c")
    filed = incident_json("inc-filed", files={"annotated": filed_photo, "crop": filed_crop})
    extra, other, shot = jpeg_bytes("unlisted"), jpeg_bytes("another photo"), jpeg_bytes("first file")
    with server.client("device") as device:
        sent = post_incident(device, filed, {"annotated": filed_photo, "crop": filed_crop})
        assert sent.status_code == 201, sent.text
        before = stored(server)
        assert before == {sha(filed_photo), sha(filed_crop)}

        # a file the incident does not list: the case's own photo (shared) and a new one
        listed = incident_json("inc-unlisted", files={"annotated": filed_photo})
        r = post_incident(device, listed, {"annotated": filed_photo, "extra": extra})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "files", r.text
        assert stored(server) == before

        # the same id with another photo: 409, the first incident's files kept
        conflict = incident_json("inc-filed", files={"annotated": other, "crop": filed_crop})
        r = post_incident(device, conflict, {"annotated": other, "crop": filed_crop})
        assert r.status_code == 409, r.text
        assert stored(server) == before

        # the second file no image: the first, stored by then, goes too
        bad = incident_json("inc-bad-file", files={"annotated": shot, "crop": b"not an image"})
        r = post_incident(device, bad, {"annotated": shot, "crop": b"not an image"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "files[1]", r.text
        assert stored(server) == before

        # the refused incident, corrected, is filed with its files
        r = post_incident(
            device, incident_json("inc-unlisted", files={"annotated": extra}), {"annotated": extra}
        )
        assert r.status_code == 201, r.text
    assert stored(server) == before | {sha(extra)}


def test_a_refused_incident_of_a_batch_leaves_no_file_but_those_a_taken_one_shares(
    server: LiveServer,
) -> None:
    shared, own, good_crop = jpeg_bytes("shared"), jpeg_bytes("own"), jpeg_bytes("good crop")
    good = incident_json("inc-good", files={"annotated": shared, "crop": good_crop})
    refused = incident_json("inc-refused", files={"annotated": shared})  # `own` is not listed
    with server.client("device") as device:
        r = post_batch(
            device,
            batch_parts(
                (refused, {"annotated": shared, "extra": own}),
                (good, {"annotated": shared, "crop": good_crop}),
                (json.dumps({"id": "no-json"}).encode()[:-1], {"annotated": jpeg_bytes("never read")}),
            ),
        )
    assert r.status_code == 200, r.text
    assert [entry["status_code"] for entry in r.json()["results"]] == [422, 201, 422]
    assert stored(server) == {sha(shared), sha(good_crop)}


def test_a_file_claimed_by_another_request_since_is_kept(server: LiveServer) -> None:
    """A request that put the same bytes after the refused one made the file young again (the store
    touches a file claimed again): that request may be about to reference it, so it stays."""
    from api.cases.ingest import remove_refused_evidence

    store = server.services.store
    mine, claimed = store.put_bytes(jpeg_bytes("mine")), store.put_bytes(jpeg_bytes("claimed"))
    placed_by = time.time()
    assert mine.created and claimed.created
    time.sleep(0.05)
    again = store.put_bytes(jpeg_bytes("claimed"))  # another request, the same bytes
    assert not again.created
    removed = remove_refused_evidence(
        server.services.read_factory, store, [mine, claimed], placed_by=placed_by
    )
    assert removed == 1 and stored(server) == {claimed.sha256}

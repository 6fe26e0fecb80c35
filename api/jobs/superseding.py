"""The earlier runs' cases of footage sent again with a corrected start time, camera or GPS track.

A resend that corrects what an upload's job runs with raises the upload's revision
(api.jobs.uploads.register_upload), and the new job's incidents get ids of their own
(api.jobs.queue.upload_id_salt): the corrected run files new cases, with the right times and positions.
The earlier runs' cases are then superseded when the new job is done: each one still under review whose
every sighting came from an earlier run of the same upload (a job queued for a lower revision; a plain
retry keeps its failed attempt's) is rejected as a duplicate, through the workflow like any rejection
(history, custody, webhooks), by the service's own role, so that it is no review decision
(api.cases.acting.transition records none for it). A case an operator has already moved on (filed,
dispatched, rejected ...) is left as it is, and the job's warning names it: it keeps the earlier run's
time and position. The corrected run's incidents are no sightings of the earlier runs' cases
(api.cases.ingest.earlier_runs_cases), even where its track places no frame either (a position-less
incident would merge with a position-less case of the same camera): they file cases of their own, and
the earlier ones are superseded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import workflow
from api.cases.acting import transition
from api.cases.ingest import earlier_runs_cases
from api.cases.reading import SERVICE_ACTOR_PREFIX
from api.storage.models import Case, CaseEvent

log = logging.getLogger(__name__)

# the first words of a superseded case's rejection note (its history shows why it was rejected)
SUPERSEDED_NOTE = "superseded: "
# at most this many kept cases are named in the job's warning
NAMED_AT_MOST = 20


@dataclass(frozen=True, slots=True)
class Superseded:
    """What superseding did: the numbers of the cases rejected, and of those kept because an operator had
    already moved them on (each a case number, or `case <id>` for a case without one)."""

    rejected: list[str]
    kept: list[str]

    @property
    def warning(self) -> str | None:
        """The job's caveat naming the kept cases; None when there are none."""
        if not self.kept:
            return None
        named = ", ".join(self.kept[:NAMED_AT_MOST])
        more = f" and {len(self.kept) - NAMED_AT_MOST} more" if len(self.kept) > NAMED_AT_MOST else ""
        one = len(self.kept) == 1
        return (
            f"{len(self.kept)} {'case' if one else 'cases'} of the earlier run {'was' if one else 'were'} "
            f"already reviewed and {'keeps its' if one else 'keep their'} times and positions: {named}{more}"
        )


def supersede_earlier_runs(session: Session, *, job_id: int, actor: Principal) -> Superseded:
    """Reject, as duplicates, the cases still under review that only earlier runs of this job's upload
    filed (its jobs of a lower revision than the upload's now: api.cases.ingest.earlier_runs_cases);
    committed. `actor` is the worker (role "system"). Running it again (a retried job) rejects nothing
    twice and names the same kept cases."""
    # seen by this run, another upload or a device too: it stays (and this run's incidents were no
    # sightings of the others: api.cases.ingest)
    case_ids = sorted(earlier_runs_cases(session, job_id=job_id))
    if not case_ids:
        return Superseded([], [])
    note = (
        f"{SUPERSEDED_NOTE}the footage was sent again with a corrected start time, camera or GPS track "
        f"(job {job_id})"
    )
    rejected: list[str] = []
    kept: list[str] = []
    for case_id in case_ids:
        row = session.execute(select(Case.status, Case.number).where(Case.id == case_id)).one_or_none()
        if row is None:
            continue
        label = row.number or f"case {case_id}"
        if row.status == workflow.PENDING_REVIEW:
            move = workflow.Move(target=workflow.REJECTED, reason=workflow.RejectReason.DUPLICATE, note=note)
            try:  # transition reads the case again, locked: an operator's move just now wins
                transition(session, principal=actor, case_id=case_id, move=move)
            except workflow.TransitionError:  # raised before anything is written
                kept.append(label)
                continue
            rejected.append(label)
        elif not _superseded_before(session, case_id):
            kept.append(label)
    session.commit()
    if rejected:
        log.info(
            "job %s: %d cases of the upload's earlier runs superseded (rejected as duplicates): %s",
            job_id,
            len(rejected),
            ", ".join(rejected),
        )
    result = Superseded(rejected, kept)
    if result.warning:
        log.warning("job %s: %s", job_id, result.warning)
    return result


def _superseded_before(session: Session, case_id: int) -> bool:
    """Whether the case was rejected by an earlier superseding (a retried job's first attempt, or an
    earlier correction), so that it is not named as one an operator reviewed."""
    found = session.scalar(
        select(CaseEvent.id)
        .where(
            CaseEvent.case_id == case_id,
            CaseEvent.to_status == workflow.REJECTED,
            CaseEvent.actor.startswith(SERVICE_ACTOR_PREFIX),
            CaseEvent.note.startswith(SUPERSEDED_NOTE),
        )
        .limit(1)
    )
    return found is not None

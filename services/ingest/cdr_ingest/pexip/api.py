"""``POST /v1/pexip/history`` (records from the puller) and ``POST /v1/pexip/events`` (Pexip's
event sink). Both answer 202 once every accepted record is durable (bus or spool)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cdr_ingest.api import read_body
from cdr_ingest.deps import IngestDep, PosterDep
from cdr_ingest.metrics import REQUESTS
from cdr_ingest.pexip.intake import Intake, decode_events, decode_history
from cdr_ingest.pexip.metrics import HISTORY_RECORDS, SINK_EVENTS
from cdr_ingest.pexip.pulls import PullReport, reports_at
from cdr_ingest.schemas import Items, Recorded, RecordsAccepted, RecordsRefused
from cdrkit.auth import READ
from cdrmodel import Origin, PayloadKind
from cdrmodel.errors import CdrflowError

router = APIRouter(tags=["pexip"])

_ERRORS: dict[int | str, dict[str, object]] = {
    202: {"model": RecordsAccepted, "description": "Every valid record is durable"},
    400: {"model": RecordsRefused, "description": "No valid record; the reasons per record"},
    401: {},
    413: {},
    415: {},
    503: {},
}


def _answer(intake: Intake, what: str) -> JSONResponse:
    rejected = [r.to_dict() for r in intake.rejected]
    body: dict[str, object] = {"accepted": len(intake.records), "rejected": rejected}
    if what == "events":
        body["ignored"] = intake.ignored
    if not intake.records and intake.rejected:
        first = intake.rejected[0]
        error, detail = (
            (first.error, first.detail)
            if len(intake.rejected) == 1
            else ("no_valid_records", "none of the records is valid; see rejected for reasons")
        )
        return JSONResponse({"error": error, "detail": detail, **body}, status_code=400)
    return JSONResponse(body, status_code=202)


async def _accept(request: Request, ingest: IngestDep, user: str | None, intake: Intake) -> None:
    origin = Origin(remote_addr=request.client.host if request.client else None, user=user)
    await ingest.accept_records([(r.kind, r.record_id, r.text) for r in intake.records], origin)


@router.post("/v1/pexip/history", status_code=202, responses=_ERRORS)
async def post_history(request: Request, ingest: IngestDep, user: PosterDep) -> JSONResponse:
    """Pexip history records, ``{"conferences": [...], "participants": [...]}``; 202 once the
    valid ones are durable, each idempotent on its record id (the CDR store keeps one per id)."""
    try:
        body = await read_body(request, ingest.settings.max_body_bytes)
        intake = decode_history(
            body, request.headers.get("content-type"), ingest.settings.events_max_records
        )
        if intake.records:
            await _accept(request, ingest, user, intake)
    except CdrflowError as exc:
        REQUESTS.labels(str(exc.status), "pexip.history").inc()
        raise
    for record in intake.records:
        rtype = "conference" if record.kind is PayloadKind.PEXIP_CONFERENCE else "participant"
        HISTORY_RECORDS.labels(rtype, "accepted").inc()
    HISTORY_RECORDS.labels("any", "rejected").inc(len(intake.rejected))
    answer = _answer(intake, "history")
    REQUESTS.labels(str(answer.status_code), "pexip.history").inc()
    return answer


@router.post("/v1/pexip/events", status_code=202, responses=_ERRORS)
async def post_events(request: Request, ingest: IngestDep, user: PosterDep) -> JSONResponse:
    """Pexip event-sink messages (one, as Pexip posts them, or a list). A participant_disconnected
    becomes a ``pexip.participant`` record (a CDR within seconds), a conference_ended a
    ``pexip.conference`` one; events that end nothing are answered and counted as ignored."""
    try:
        body = await read_body(request, ingest.settings.max_body_bytes)
        intake = decode_events(
            body, request.headers.get("content-type"), ingest.settings.events_max_records
        )
        if intake.records:
            await _accept(request, ingest, user, intake)
    except CdrflowError as exc:
        REQUESTS.labels(str(exc.status), "pexip.event").inc()
        raise
    SINK_EVENTS.labels("accepted").inc(len(intake.records))
    SINK_EVENTS.labels("ignored").inc(intake.ignored)
    SINK_EVENTS.labels("rejected").inc(len(intake.rejected))
    answer = _answer(intake, "events")
    REQUESTS.labels(str(answer.status_code), "pexip.event").inc()
    return answer


PULLS_FILE = "pexip-pulls.json"


@router.post("/v1/pexip/pulls", response_model=Recorded, responses={400: {}, 401: {}, 422: {}})
async def post_pull(report: PullReport, ingest: IngestDep, user: PosterDep) -> dict[str, str]:
    """A puller's report of a completed pull (``cdrflow pexip pull`` sends it)."""
    reports_at(ingest.settings.data_dir / PULLS_FILE).record(report)
    return {"status": "recorded"}


@router.get("/v1/pexip/pulls", response_model=Items, dependencies=[READ])
async def get_pulls(ingest: IngestDep) -> dict[str, object]:
    """The last completed pull of each Management Node; ``stale`` once two scheduled pulls were
    missed (Pexip keeps only its latest ~10,000 conferences)."""
    return {"items": reports_at(ingest.settings.data_dir / PULLS_FILE).items()}

from typing import Annotated

from fastapi import Depends, Request

from cdr_ingest.auth import require_poster
from cdr_ingest.service import IngestService
from cdrkit.app import component

# async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per
# request for what is a dictionary lookup.


async def get_ingest(request: Request) -> IngestService:
    ingest: IngestService = component(request, "ingest").service
    return ingest


IngestDep = Annotated[IngestService, Depends(get_ingest)]

# The authenticated poster (user name, or token#N) on ingest POST routes; None with open access.
PosterDep = Annotated[str | None, Depends(require_poster)]

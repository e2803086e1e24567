from typing import Annotated

from fastapi import Depends, Request

from cdr_ingest.service import IngestService
from cdrkit.app import component


def get_ingest(request: Request) -> IngestService:
    ingest: IngestService = component(request, "ingest").service
    return ingest


IngestDep = Annotated[IngestService, Depends(get_ingest)]

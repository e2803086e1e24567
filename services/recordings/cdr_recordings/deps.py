"""Dependencies of the recordings routes.

Who may read recordings is ``cdrkit.auth`` (``CDRFLOW_API_TOKENS``, role ``read``), with
``?access_token=`` accepted beside the header for an ``<audio src>`` that cannot send one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cdr_recordings.service import RecordingsService
from cdrkit.app import component


async def get_service(request: Request) -> RecordingsService:
    service: RecordingsService = component(request, "recordings").service
    return service


ServiceDep = Annotated[RecordingsService, Depends(get_service)]

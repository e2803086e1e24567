from typing import Annotated

from fastapi import Depends, Request

from cdr_stats.service import StatsService
from cdrkit.app import component


async def get_stats(request: Request) -> StatsService:
    stats: StatsService = component(request, "stats").service
    return stats


StatsDep = Annotated[StatsService, Depends(get_stats)]

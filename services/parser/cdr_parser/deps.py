from typing import Annotated

from fastapi import Depends, Request

from cdr_parser.service import ParserService
from cdrkit.app import component

# async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per
# request for what is a dictionary lookup.


async def get_parser(request: Request) -> ParserService:
    parser: ParserService = component(request, "parser").service
    return parser


ParserDep = Annotated[ParserService, Depends(get_parser)]

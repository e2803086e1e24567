from typing import Annotated

from fastapi import Depends, Request

from cdr_parser.service import ParserService
from cdrkit.app import component


def get_parser(request: Request) -> ParserService:
    parser: ParserService = component(request, "parser").service
    return parser


ParserDep = Annotated[ParserService, Depends(get_parser)]

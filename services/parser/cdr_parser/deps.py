from typing import Annotated

from cdrkit.app import component
from fastapi import Depends, Request

from cdr_parser.service import ParserService


def get_parser(request: Request) -> ParserService:
    parser: ParserService = component(request, "parser").service
    return parser


ParserDep = Annotated[ParserService, Depends(get_parser)]

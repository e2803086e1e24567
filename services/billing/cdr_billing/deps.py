from typing import Annotated

from fastapi import Depends, Request

from cdr_billing.service import BillingService
from cdrkit.app import component


async def get_billing(request: Request) -> BillingService:
    billing: BillingService = component(request, "billing").service
    return billing


BillingDep = Annotated[BillingService, Depends(get_billing)]

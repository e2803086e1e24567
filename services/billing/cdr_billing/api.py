"""The billing service's HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from cdr_billing.deps import BillingDep
from cdr_billing.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    AssignmentIn,
    AssignmentOut,
    BillOut,
    ChargeOut,
    TariffIn,
    TariffList,
    TariffOut,
    TariffVersionOut,
)
from cdrkit.auth import ADMIN, READ
from cdrkit.openapi import errors, link

router = APIRouter(tags=["billing"])


@router.get(
    "/v1/tariffs",
    response_model=TariffList,
    response_model_exclude_none=True,
    dependencies=[READ],
)
async def list_tariffs(billing: BillingDep) -> dict[str, Any]:
    """Every tariff with its versions (without their destination lists)."""
    await billing.refresh_tariffs()
    return {
        "default": billing.settings.default_tariff,
        "items": [
            {"name": name, "versions": [t.summary() for t in billing.versions(name)]}
            for name in sorted(billing.tariffs)
        ],
    }


@router.post(
    "/v1/tariffs",
    status_code=201,
    response_model=TariffVersionOut,
    response_model_exclude_none=True,
    dependencies=[ADMIN],
    responses={
        201: {
            "description": "The new version",
            "links": {"tariff": link("/v1/tariffs/{name}", name="$response.body#/name")},
        },
        **errors(409),
    },
)
async def create_tariff(body: TariffIn, billing: BillingDep) -> dict[str, Any]:
    """Create a new version of a tariff; calls priced already keep their price."""
    return (await billing.create_tariff(body)).summary()


@router.get(
    "/v1/tariffs/{name}",
    response_model=TariffOut,
    response_model_exclude_none=True,
    dependencies=[READ],
)
async def get_tariff(
    name: str,
    billing: BillingDep,
    destinations: bool = Query(False, description="include every version's destinations"),
) -> dict[str, Any]:
    """A tariff's versions, oldest first."""
    await billing.refresh_tariffs()
    versions = []
    for t in billing.versions(name):
        item = t.summary()
        if destinations:
            item["destinations"] = [d.as_dict() for d in t.destinations]
        versions.append(item)
    return {"name": name, "versions": versions}


@router.put(
    "/v1/tariff-assignments/{subscriber}", response_model=AssignmentOut, dependencies=[ADMIN]
)
async def assign_tariff(subscriber: str, body: AssignmentIn, billing: BillingDep) -> dict[str, str]:
    """Price this subscriber's calls with the named tariff from now on."""
    await billing.assign(subscriber, body.tariff)
    return {"subscriber": subscriber, "tariff": body.tariff}


@router.get("/v1/charges/{call_id}", response_model=ChargeOut, dependencies=[READ])
async def get_charge(call_id: str, billing: BillingDep) -> dict[str, Any]:
    """A call's charge, how it was priced, and its adjustments."""
    return await billing.charge(call_id)


@router.post(
    "/v1/charges/{call_id}/adjustments",
    status_code=201,
    response_model=AdjustmentOut,
    dependencies=[ADMIN],
    responses=errors(409),
)
async def add_adjustment(call_id: str, body: AdjustmentIn, billing: BillingDep) -> dict[str, Any]:
    """Add a signed adjustment to a charge (the charge itself never changes)."""
    return await billing.add_adjustment(call_id, body)


@router.get("/v1/bills/{subscriber}", response_model=BillOut, dependencies=[READ])
async def get_bill(
    subscriber: str,
    billing: BillingDep,
    period: str | None = Query(None, description="YYYY-MM or MM/YYYY; default: last closed"),
) -> dict[str, Any]:
    """A subscriber's bill for a closed month: the calls that ended in it, and adjustments."""
    return await billing.bill(subscriber, period)

"""The billing service's HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from cdr_billing.deps import BillingDep
from cdr_billing.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    AssignmentIn,
    AssignmentOut,
    AssignmentView,
    BillOut,
    ChargeOut,
    ChargePage,
    TariffIn,
    TariffList,
    TariffOut,
    TariffVersionOut,
)
from cdrkit.auth import ADMIN, READ
from cdrkit.openapi import errors, link
from cdrkit.query import decode_cursor, encode_cursor, parse_instant
from cdrmodel.errors import InvalidInput

router = APIRouter(tags=["billing"])


@router.get(
    "/v1/tariffs",
    response_model=TariffList,
    response_model_exclude_unset=True,
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
    response_model_exclude_unset=True,
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
    response_model_exclude_unset=True,
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


@router.get(
    "/v1/tariff-assignments/{subscriber}", response_model=AssignmentView, dependencies=[READ]
)
async def get_assignment(subscriber: str, billing: BillingDep) -> dict[str, Any]:
    """The tariff this subscriber's calls are priced with (``assigned: false``: the default)."""
    _no_nul(subscriber, "subscriber")
    return await billing.assignment(subscriber)


@router.get("/v1/charges", response_model=ChargePage, dependencies=[READ])
async def list_charges(
    billing: BillingDep,
    subscriber: Annotated[str, Query(min_length=1, max_length=128)],
    since: Annotated[str | None, Query(description="end_time ≥ this (epoch s or ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="end_time < this (epoch s or ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A subscriber's charges (priced, free and not answered), the latest call end first, with
    keyset paging (``next_cursor``)."""
    _no_nul(subscriber, "subscriber")
    after = None
    if cursor:
        values = decode_cursor(cursor)
        try:
            after = datetime.fromisoformat(values[0]), str(values[1])
        except (IndexError, ValueError, TypeError) as exc:
            raise InvalidInput("the cursor is not one this API issued") from exc
        if after[0].tzinfo is None or "\x00" in after[1]:
            raise InvalidInput("the cursor is not one this API issued")
    items, last = await billing.list_charges(
        subscriber,
        parse_instant(since, "since") if since else None,
        parse_instant(until, "until") if until else None,
        after,
        limit,
    )
    next_cursor = encode_cursor([last[0].isoformat(), last[1]]) if last else None
    return {"items": items, "next_cursor": next_cursor}


def _no_nul(value: str, name: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{name} holds a NUL character")


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


@router.get(
    "/v1/bills/{subscriber}",
    response_model=BillOut,
    response_model_exclude_unset=True,
    dependencies=[READ],
)
async def get_bill(
    subscriber: str,
    billing: BillingDep,
    period: str | None = Query(
        None,
        description="YYYY-MM or MM/YYYY (a closed month), or current (provisional); "
        "default: the last closed month",
    ),
) -> dict[str, Any]:
    """A subscriber's bill for a month: the calls that ended in it, and adjustments.
    ``period=current`` is the month so far, marked ``provisional``."""
    return await billing.bill(subscriber, period)

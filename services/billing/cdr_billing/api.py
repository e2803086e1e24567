"""The billing service's HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["billing"])

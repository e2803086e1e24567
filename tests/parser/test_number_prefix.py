"""``GET /v1/cdrs?number_prefix=``: the console's "number starts with" filter, either side of the
call, keyset-paged like every list, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdr_parser.rows import cdr_row
from cdrflow.platform import create_service_app
from cdrmodel import CDR
from tests.e2e.conftest import serving


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


async def test_number_prefix_matches_either_side_and_pages(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    numbers = [
        ("551130001111", "1001"),  # caller matches
        ("1002", "551130002222"),  # callee matches
        ("551130003333", "551130004444"),  # both: listed once
        ("551230005555", "1003"),  # other prefix
        ("+551130006666", "1004"),  # "+" is not the prefix's first digit
        ("55113%_x", "1005"),  # LIKE wildcards in the data are plain characters
    ]
    cdrs = [
        CDR(
            call_id=f"p{i}",
            source="freeswitch",
            caller_number=caller,
            callee_number=callee,
            start_time=now - timedelta(minutes=i),
        )
        for i, (caller, callee) in enumerate(numbers)
    ]
    app = create_service_app(
        "parser", database_url=db_url, bus_url=f"memory://{uuid.uuid4().hex}", data_dir=tmp_path
    )
    async with serving(app) as client:
        repo = app.state.cdrflow.components["parser"].service.repo
        await repo.store_batch([cdr_row(c, now) for c in cdrs], [], [])
        r = await client.get("/v1/cdrs", params={"number_prefix": "551130"})
        assert r.status_code == 200, r.text
        assert [c["call_id"] for c in r.json()["items"]] == ["p0", "p1", "p2"]
        # a wildcard in the prefix is a character, not "anything"
        r = await client.get("/v1/cdrs", params={"number_prefix": "55113%"})
        assert [c["call_id"] for c in r.json()["items"]] == ["p5"]
        # keyset pages: one at a time, each call once, newest first
        seen, cursor = [], None
        while True:
            params = {
                "number_prefix": "5511",
                "limit": "1",
                **({"cursor": cursor} if cursor else {}),
            }
            body = (await client.get("/v1/cdrs", params=params)).json()
            seen += [c["call_id"] for c in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert seen == ["p0", "p1", "p2", "p5"]
        r = await client.get("/v1/cdrs", params={"number_prefix": "5"})
        assert r.status_code == 422  # too short to be a useful range

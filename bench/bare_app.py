"""The physical limit for ingest: a bare FastAPI endpoint that reads the same body and answers."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/cdr")
async def post_cdr(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"id": "x", "call_id": None, "status": "accepted", "n": len(body)})


@app.post("/v1/events")
async def post_events(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"accepted": len(body), "rejected": []}, status_code=202)


@app.post("/v1/edge/records")
async def post_edge_records(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"accepted": body.count(b'"seq"'), "duplicates": 0})


@app.post("/v1/edge/checkin")
async def post_edge_checkin(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"})

"""``cdrflow edge``: the agent that runs next to a serial PBX and never loses a line.

It captures raw call lines (serial port, TCP, or a mock), commits each to a local SQLite queue,
and delivers them to ingest's ``POST /v1/edge/records``. It interprets nothing: the parser maps
the lines, so a mapping fix can be replayed over the stored raw lines.

This package must stay light (it runs on small boxes): it imports none of the services' server
stacks (FastAPI, SQLAlchemy, aioboto3, lxml) and no pydantic; ``tests/edge`` checks that.
"""

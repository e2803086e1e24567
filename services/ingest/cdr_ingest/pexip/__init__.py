"""Pexip Infinity: the history puller (``cdrflow pexip pull|run``), its CSV files, and the ingest
routes for history records and event-sink pushes (``POST /v1/pexip/history``, ``/v1/pexip/events``).
"""

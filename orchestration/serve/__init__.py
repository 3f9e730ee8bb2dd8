"""`meterbook serve`: the HTTP API (SPEC 9): answers from the published snapshot, and takes
events (`POST /v1/events`), which it writes as landing files for the ingest.

`create_app(home)` builds the FastAPI app; `serve(home, host, port, on_ready)` runs it under
uvicorn until SIGINT or SIGTERM; `running_server(home)` runs it in a background thread and
yields its URL. Nothing here opens the warehouse.
"""

"""`meterbook serve`: the read-only HTTP API over the published snapshot (SPEC 9).

`create_app(home)` builds the FastAPI app; `serve(home, host, port, on_ready)` runs it under
uvicorn until SIGINT or SIGTERM; `running_server(home)` runs it in a background thread and
yields its URL. Nothing here opens the warehouse.
"""

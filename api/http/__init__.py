"""The HTTP room: the FastAPI app (app.py), its dependencies (deps.py), routes, request parsing and the
response schemas. The only room that imports fastapi; it calls the domain rooms, never the other way."""

"""The case service: incidents become evidence cases in grid cells and run through the workflow.

Rooms (each package's docstring says what it may import):
  http/      the FastAPI app, routes, request parsing and response schemas (the only room importing fastapi)
  cases/     the case domain: ingest and merging, reading, workflow, custody, grids, webhooks, stats
  accounts/  users, devices, login throttling, tokens and their cache
  jobs/      footage uploads, the job queue and the worker (the worker alone imports detect, lazily)
  storage/   the database (engine, ORM models, Alembic migrations) and the evidence file store
  cli/       the `gridpatrol` command line
settings.py and services.py (the long-lived parts built from the settings) are shared by all of them.
"""

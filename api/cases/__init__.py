"""The case domain: incidents become cases (ingest, merging), reading and acting on cases (workflow),
custody, grid cells, webhooks and statistics. Imports storage and accounts; never fastapi or detect."""

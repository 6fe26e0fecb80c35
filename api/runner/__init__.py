"""The runner's side of the case service: what a process near the cameras (or in a data centre) needs
to hand its incidents to the case service over HTTP and lose none when the link or the service is down.

  spool.py      an on-disk, bounded, ordered, crash-safe queue of incidents with their evidence files
  forwarder.py  a thread sending the spool's items, oldest first, to POST /api/incidents with a device key

The runner talks to the case service only over HTTP, as any other device does: this room may import
httpx and the standard library, nothing of the service (api.storage, api.cases, api.accounts, api.jobs,
api.http), no fastapi, sqlalchemy, torch or ultralytics (see .importlinter).
"""

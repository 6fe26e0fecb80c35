"""The runner's side of the case service: what a process near the cameras (or in a data centre) needs
to analyse live cameras and hand their incidents to the case service over HTTP, losing none when the
link or the service is down.

  camera.py     one camera: its stream through the site's detector and rules, incidents into its spool,
                its live state reported (PUT /api/cameras/{id}/state)
  spool.py      an on-disk, bounded, ordered, crash-safe queue of incidents with their evidence files
  forwarder.py  a thread sending the spool's items, oldest first, to POST /api/incidents with a device key

The runner talks to the case service only over HTTP, as any other device does: this room may import
httpx and the standard library, nothing of the service (api.storage, api.cases, api.accounts, api.jobs,
api.http), no fastapi or sqlalchemy; only camera.py loads detect and streams (see .importlinter).
"""

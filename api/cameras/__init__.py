"""Live cameras managed by the case service: the registry (stream URL, position or fixed grid cell,
team, zones, active hours, enabled) and each camera's live state as the runner analysing it reports
it (api.cameras.registry). Runners (api.runner) read it over HTTP.

Imports storage, accounts and api.cases (webhooks, grid cells); never fastapi, detect or streams:
the zones arrive validated by the caller (the HTTP layer and the CLI validate them with the site
config's own models, detect.config)."""

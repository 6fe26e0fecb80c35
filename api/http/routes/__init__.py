"""One router per resource; each route parses, checks the role and calls a domain service."""

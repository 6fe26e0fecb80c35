"""Accounts: users, devices and their keys, login throttling, tokens and the cache of who a token is.
Imports storage; never fastapi or detect."""

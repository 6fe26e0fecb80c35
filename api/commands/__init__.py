"""Command groups of the `gridpatrol` CLI (see api/cli.py)."""


class CommandError(Exception):
    """A problem the user can fix (bad file, bad option): printed as one line, exit status 1."""

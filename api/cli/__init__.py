"""The `gridpatrol` command line: api/cli/main.py builds the parser from the command-group modules
(each with a `register(subparsers)` function). Handlers import heavy packages (torch, detect) only when
they run, so that `gridpatrol serve` without a worker stays light."""


class CommandError(Exception):
    """A problem the user can fix (bad file, bad option): printed as one line, exit status 1."""

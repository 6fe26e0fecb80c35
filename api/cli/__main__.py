"""`python -m api.cli`: the same as the `gridpatrol` command."""

import sys

from api.cli.main import main

sys.exit(main())

"""`python -m optforge ...` is the `optforge` command."""

import sys

from optforge.search.cli import main

sys.exit(main())

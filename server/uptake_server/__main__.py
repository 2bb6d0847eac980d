"""Run the command line: ``python -m uptake_server``."""

import sys

from uptake_server.cli import main

sys.exit(main())

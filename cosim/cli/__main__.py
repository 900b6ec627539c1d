"""`python -m cosim.cli ...`, the way the launcher starts every service."""
import sys

from cosim.cli.commands import main

sys.exit(main())

"""`python -m cosim.cli ...`, the way the launcher starts every service (a service ends without the
interpreter's slow teardown: cosim.cli.commands.exit_fast)."""
from cosim.cli.commands import exit_fast, main

exit_fast(main())

"""Starting a run: checks before anything starts (``preflight``), the services' command lines
(``command_lines``), every service as a local process (``local``: ``cosim run``), or as threads
of one process (``inprocess``)."""

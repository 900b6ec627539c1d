"""What a run leaves for people: its files read back as labelled data (``reader``: ``cosim.load``),
the summary and time breakdown (``report``, ``breakdown``), figures (``figures``), NWB export
(``nwb``) and the live view of a running co-simulation (``watch``)."""

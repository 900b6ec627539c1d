"""What every service runs on: the node interface (``adapter``), sockets, framing and heartbeats
(``transport``, ``security``), the node side of the protocol (``node``), STEP_DONE batches
(``step_copies``), checkpoints (``checkpoint``), results files appended window by window
(``store``) and the progress bar (``progress``). Names no service and no simulator."""

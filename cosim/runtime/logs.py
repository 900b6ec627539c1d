"""A service process owns its logging: what simulators' imports do to it is undone here."""
from __future__ import annotations

import logging
import logging.config
from pathlib import Path


def keep_tvb_off_logging() -> None:
    """tvb-library configures logging when first imported (``logging.config.fileConfig`` of its
    ``library_logger.conf``): the root logger goes to WARNING on stdout in TVB's own format and into a
    ``library.log`` in the working folder, so a service that imports TVB lost its own INFO lines
    (the TVB node's finish line) and switched format (``- ERROR - cosim.transport -``). A service
    process owns its logging: TVB's configuration file is skipped, its loggers log through ours.
    Called by the CLI's logging set-up and by the zygote before it imports the simulators."""
    original = logging.config.fileConfig
    if getattr(original, "_cosim_keeps_tvb_off", False):
        return

    def file_config(fname, *args, **kwargs):
        parts = Path(str(fname)).parts
        if "tvb" in parts and Path(str(fname)).name.startswith("library_logger"):
            return None
        return original(fname, *args, **kwargs)
    file_config._cosim_keeps_tvb_off = True        # type: ignore[attr-defined]
    logging.config.fileConfig = file_config

"""Moved to :mod:`cmim_hf.cli.embed`; this path is kept for 0.2 only (see CHANGELOG), with its old
names: ``add_embed_arguments`` (now ``add_arguments``), and ``run_embed_command`` and ``main``,
which report an error as ``cmim embed`` does and return the exit code."""

import sys

from cmim_hf.cli._legacy import command_functions, command_main, warn_moved
from cmim_hf.cli.embed import parse_layers  # noqa: F401

warn_moved(__name__, "cmim_hf.cli.embed")
add_embed_arguments, run_embed_command = command_functions("embed")
main = command_main("embed")

if __name__ == "__main__":
    sys.exit(main())

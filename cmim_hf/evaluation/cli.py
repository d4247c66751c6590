"""Moved to :mod:`cmim_hf.cli.benchmark`; this path is kept for 0.2 only (see CHANGELOG), with its
old names: ``add_benchmark_arguments`` (now ``add_arguments``), ``run_benchmark_command`` and
``main``, which report an error as ``cmim benchmark`` does and return the exit code, and
``tasks_from_args`` (now in :mod:`cmim_hf.cli.options`)."""

import sys

from cmim_hf.cli._legacy import command_functions, command_main, warn_moved
from cmim_hf.cli.options import DEFAULT_TASKS, tasks_from_args  # noqa: F401

warn_moved(__name__, "cmim_hf.cli.benchmark")
add_benchmark_arguments, run_benchmark_command = command_functions("benchmark")
main = command_main("benchmark")

if __name__ == "__main__":
    sys.exit(main())

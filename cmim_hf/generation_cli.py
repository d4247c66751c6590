"""Moved to the :mod:`cmim_hf.cli` package, one module per command (``sample``, ``reconstruct``,
``optimize``, ``interpolate``, ``fit_prior``) and what they share in :mod:`cmim_hf.cli.generate`;
this path is kept for 0.2 only (see CHANGELOG), with its old names: ``add_<command>_arguments``
(now each module's ``add_arguments``) and ``run_<command>_command``, which reports an error as
``cmim <command>`` does and returns the exit code; ``UsageError`` is :class:`cmim_hf.errors.UsageError`."""

from cmim_hf.cli._legacy import command_functions, warn_moved
from cmim_hf.cli.generate import DRAWN_PANELS, OUTPUT_SUFFIXES  # noqa: F401
from cmim_hf.cli.optimize import OPTIMIZE_COLUMNS, resolve_score  # noqa: F401
from cmim_hf.cli.reconstruct import RECONSTRUCT_COLUMNS  # noqa: F401
from cmim_hf.cli.sample import PRIOR_CHOICES  # noqa: F401
from cmim_hf.errors import UsageError  # noqa: F401

warn_moved(__name__, "cmim_hf.cli (sample, reconstruct, optimize, interpolate, fit_prior, generate)")
add_sample_arguments, run_sample_command = command_functions("sample")
add_reconstruct_arguments, run_reconstruct_command = command_functions("reconstruct")
add_optimize_arguments, run_optimize_command = command_functions("optimize")
add_interpolate_arguments, run_interpolate_command = command_functions("interpolate")
add_fit_prior_arguments, run_fit_prior_command = command_functions("fit-prior")

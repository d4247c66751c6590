"""Moved to :mod:`cmim_hf.cli.evaluate_samples` (and ``read_smiles_file`` to :mod:`cmim_hf.io`);
this path is kept for 0.2 only (see CHANGELOG), with its old names: ``add_evaluate_samples_arguments``
(now ``add_arguments``) and ``run_evaluate_samples_command``, which reports an error as
``cmim evaluate-samples`` does and returns the exit code."""

from cmim_hf.cli._legacy import command_functions, warn_moved
from cmim_hf.cli.evaluate_samples import EXAMPLES, REFERENCE_OPTIONS  # noqa: F401
from cmim_hf.io import CSV_SUFFIXES, TEXT_SUFFIXES, read_smiles_file  # noqa: F401

warn_moved(__name__, "cmim_hf.cli.evaluate_samples")
add_evaluate_samples_arguments, run_evaluate_samples_command = command_functions("evaluate-samples")

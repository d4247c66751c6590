"""Moved to :mod:`cmim_hf.training.corpus`; this path is kept for 0.2 only (see CHANGELOG)."""

from cmim_hf._compat import alias_moved_module

alias_moved_module(__name__, "cmim_hf.training.corpus")

"""RDKit grid images of generation results, the pictures chemists read instead of SMILES.

Every result of :mod:`cmim_hf.generation` becomes a list of :class:`Panel` (a molecule and a legend
saying what the row means) and one grid: a PIL image (PNG) or an SVG string, for notebooks and for
``cmim sample/reconstruct/optimize/interpolate --image``. Invalid outputs are drawn as empty panels
labelled ``INVALID`` with the decoded string, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path
from typing import Any

from rdkit import Chem, RDLogger
from rdkit.Chem import Draw

from cmim_hf.generation.results import (
    GenerationResult,
    InterpolationResult,
    NeighbourhoodResult,
    OptimizationResult,
    ReconstructionResult,
)
from cmim_hf.outputs import atomic_output

__all__ = ["IMAGE_SUFFIXES", "Panel", "draw_panels", "draw_result", "result_panels", "save_image"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".svg")
INVALID = "INVALID"
_SHOWN_CHARACTERS = 28  # of an invalid decoded string, in its legend


@dataclass(frozen=True)
class Panel:
    """One cell of a grid: a SMILES (drawn when valid) and its legend."""

    smiles: str | None
    legend: str

    @property
    def molecule(self) -> Chem.Mol | None:
        """The parsed molecule, or None where RDKit rejects the SMILES (or there is none)."""
        if not self.smiles:
            return None
        RDLogger.DisableLog("rdApp.*")
        try:
            return Chem.MolFromSmiles(self.smiles)
        finally:
            RDLogger.EnableLog("rdApp.*")


def _shown(smiles: str | None) -> str:
    text = smiles or "(empty)"
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."


def _output_panel(smiles: str, valid: bool, label: str, detail: str = "") -> Panel:
    """A generated molecule, legend ``<label>: <detail>``; an invalid one keeps its string instead:
    ``<label>: INVALID <string>``."""
    if not valid:
        return Panel(smiles, f"{label}: {INVALID} {_shown(smiles)}")
    return Panel(smiles, f"{label}: {detail}" if detail else label)


@singledispatch
def result_panels(result: Any, top_k: int | None = None) -> list[Panel]:
    """The panels of a generation result, in reading order (see the registered types); a list of
    optimisation results (one per seed) gives each seed's panels in turn, ``top_k`` molecules each."""
    raise TypeError(f"cannot draw a {type(result).__name__}")


@result_panels.register
def _(result: list, top_k: int | None = None) -> list[Panel]:
    return [panel for item in result for panel in result_panels(item, top_k=top_k)]


@result_panels.register
def _(result: GenerationResult, top_k: int | None = None) -> list[Panel]:
    """Prior samples: ``sample i``."""
    return [_output_panel(s, ok, f"sample {i}") for i, (s, ok) in enumerate(zip(result.smiles, result.valid))]


@result_panels.register
def _(result: ReconstructionResult, top_k: int | None = None) -> list[Panel]:
    """Input and reconstruction side by side: ``input i`` / ``exact`` or ``differs, Tanimoto x``."""
    panels = []
    for i, (source, smiles, ok, exact, similarity) in enumerate(
        zip(result.inputs, result.smiles, result.valid, result.exact, result.similarity)
    ):
        panels.append(Panel(source, f"input {i}"))
        verdict = "exact" if exact else f"differs, Tanimoto {similarity:.2f}"
        panels.append(_output_panel(smiles, ok, f"reconstruction {i}", verdict))
    return panels


@result_panels.register
def _(result: NeighbourhoodResult, top_k: int | None = None) -> list[Panel]:
    """Each seed, then the samples around it: ``seed k, sample n: Tanimoto x`` (to the seed)."""
    panels = []
    for k, seed in enumerate(result.seeds):
        panels.append(Panel(seed, f"seed {k}"))
        rows = zip(result.seed_index, result.smiles, result.valid, result.similarity)
        around = [(smiles, ok, similarity) for i, smiles, ok, similarity in rows if i == k]
        for n, (smiles, ok, similarity) in enumerate(around):
            panels.append(_output_panel(smiles, ok, f"seed {k}, sample {n}", f"Tanimoto {similarity:.2f}"))
    return panels


@result_panels.register
def _(result: InterpolationResult, top_k: int | None = None) -> list[Panel]:
    """The path from ``start`` to ``end``: ``step j: t = x``."""
    ends = {0: " (start)", len(result.t) - 1: " (end)"}
    return [
        _output_panel(smiles, ok, f"step {j}", f"t = {t:.2f}{ends.get(j, '')}")
        for j, (t, smiles, ok) in enumerate(zip(result.t, result.smiles, result.valid))
    ]


@result_panels.register
def _(result: OptimizationResult, top_k: int | None = None) -> list[Panel]:
    """The seed with its score, then the ``top_k`` best molecules: score, gain over the seed,
    similarity to the seed."""
    panels = [Panel(result.seed, f"seed: score {result.seed_score:.3f}")]
    for rank, molecule in enumerate(result.molecules[:top_k], start=1):
        gain = molecule.score - result.seed_score
        panels.append(
            Panel(
                molecule.smiles,
                f"#{rank}: score {molecule.score:.3f} ({gain:+.3f}), sim {molecule.similarity:.2f}",
            )
        )
    return panels


def draw_panels(
    panels: Sequence[Panel], columns: int = 4, panel_size: tuple[int, int] = (250, 220), svg: bool = False
) -> Any:
    """A grid of ``panels``, ``columns`` per row: a PIL image, or an SVG string with ``svg=True``.
    Its size is ``(columns * width, rows * height)`` with ``columns`` capped at the panel count."""
    if not panels:
        raise ValueError("nothing to draw: no molecules")
    if columns < 1:
        raise ValueError(f"columns must be positive, got {columns}")
    columns = min(columns, len(panels))
    # RDKit leaves the legend of an empty molecule out: an invalid panel shows one dummy atom
    molecules = [panel.molecule or Chem.MolFromSmiles("*") for panel in panels]
    return Draw.MolsToGridImage(
        molecules,
        molsPerRow=columns,
        subImgSize=panel_size,
        legends=[panel.legend for panel in panels],
        useSVG=svg,
    )


def draw_result(
    result: Any, columns: int | None = None, max_panels: int = 48, top_k: int | None = None, svg: bool = False
) -> Any:
    """The grid image of a generation result (PIL image, or SVG string with ``svg=True``), at most
    ``max_panels`` panels (``top_k``: molecules per optimised seed). Reconstructions default to 6
    columns (three input/output pairs per row), everything else to 4."""
    panels = result_panels(result, top_k=top_k)[:max_panels]
    if columns is None:
        columns = 6 if isinstance(result, ReconstructionResult) else 4
    return draw_panels(panels, columns=columns, svg=svg)


def save_image(image: Any, path: str | os.PathLike) -> Path:
    """Write a grid from :func:`draw_panels` to ``path`` (``.png`` or ``.svg``, matching the image),
    through a temporary file moved into place."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"an image must be .png or .svg, got {path}")
    with atomic_output(path) as partial:
        if isinstance(image, str):
            if suffix != ".svg":
                raise ValueError(f"an SVG grid must be saved as .svg, got {path}")
            partial.write_text(image, encoding="utf-8")
        else:
            if suffix != ".png":
                raise ValueError(f"a PNG grid must be saved as .png, got {path}")
            image.save(partial, format="PNG")
    return path

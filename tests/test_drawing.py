"""RDKit grids of generation results (issue 14): sizes, legends, invalid rows marked, CLI --image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmim_hf.cli import main
from cmim_hf.drawing import INVALID, Panel, draw_panels, draw_result, result_panels, save_image
from cmim_hf.generation import results

LATENTS = torch.zeros(3, 1, 4)


def test_reconstruction_panels_pair_input_and_output() -> None:
    result = results.ReconstructionResult(
        smiles=["CCO", "CCN", "C1CC"], valid=[True, True, False], latents=LATENTS,
        inputs=["CCO", "CCC", "CCCl"], exact=[True, False, False], similarity=np.array([1.0, 0.25, np.nan]),
    )  # fmt: skip
    legends = [panel.legend for panel in result_panels(result)]
    assert legends == [
        "input 0", "reconstruction 0: exact",
        "input 1", "reconstruction 1: differs, Tanimoto 0.25",
        "input 2", f"reconstruction 2: {INVALID} C1CC",
    ]  # fmt: skip
    image = draw_result(result)
    assert image.size == (6 * 250, 1 * 220)  # three input/output pairs per row


def test_every_result_type_has_its_legends() -> None:
    samples = results.GenerationResult(
        smiles=["CCO", "", "c1ccccc1"], valid=[True, False, True], latents=LATENTS
    )
    assert [p.legend for p in result_panels(samples)] == [
        "sample 0",
        f"sample 1: {INVALID} (empty)",
        "sample 2",
    ]

    around = results.NeighbourhoodResult(
        smiles=["CCO", "xx", "CCN"], valid=[True, False, True], latents=LATENTS,
        seeds=["CCO", "CCN"], seed_index=[0, 0, 1], similarity=np.array([1.0, np.nan, 0.5]),
    )  # fmt: skip
    assert [p.legend for p in result_panels(around)] == [
        "seed 0", "seed 0, sample 0: Tanimoto 1.00", f"seed 0, sample 1: {INVALID} xx",
        "seed 1", "seed 1, sample 0: Tanimoto 0.50",
    ]  # fmt: skip

    path = results.InterpolationResult(
        smiles=["CCO", "C(", "CCN"], valid=[True, False, True], latents=LATENTS, start="CCO", end="CCN",
        t=[0.0, 0.5, 1.0],
    )  # fmt: skip
    assert [p.legend for p in result_panels(path)] == [
        "step 0: t = 0.00 (start)", f"step 1: {INVALID} C(", "step 2: t = 1.00 (end)",
    ]  # fmt: skip

    found = [
        results.OptimizedMolecule("CCO", 0.75, 0.5, 1.0),
        results.OptimizedMolecule("CCN", 0.5, 0.25, 0.625),
    ]
    search = results.OptimizationResult("CC", 0.5, found, n_evaluated=8, n_penalized=1, history=[1.0])
    assert [p.legend for p in result_panels([search, search], top_k=1)] == [
        "seed: score 0.500",
        "#1: score 0.750 (+0.250), sim 0.50",
    ] * 2


def test_grid_size_svg_and_saving(tmp_path: Path) -> None:
    panels = [Panel("CCO", "a"), Panel("C1CC", "b: INVALID"), Panel(None, "c"), Panel("c1ccccc1", "d"),
              Panel("CCN", "e")]  # fmt: skip
    assert [p.molecule is None for p in panels] == [False, True, True, False, False]
    image = draw_panels(panels, columns=2, panel_size=(100, 80))
    assert image.size == (200, 240)  # 2 columns x 3 rows
    svg = draw_panels(panels, columns=4, panel_size=(100, 80), svg=True)
    assert svg.lstrip().startswith("<?xml") and "width='400px'" in svg and "height='160px'" in svg

    save_image(image, tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == (200, 240)
    save_image(svg, tmp_path / "grid.svg")
    assert (tmp_path / "grid.svg").read_text().startswith("<?xml")
    with pytest.raises(ValueError, match=".png or .svg"):
        save_image(image, tmp_path / "grid.jpg")
    with pytest.raises(ValueError, match="nothing to draw"):
        draw_panels([])


@pytest.mark.parametrize(
    ("command", "columns", "rows"),
    [
        (["sample", "-n", "5", "--prior", "standard"], 4, 2),
        (["reconstruct", "IN"], 6, 1),  # 3 inputs -> 3 (input, output) pairs
        (["optimize", "IN", "--iterations", "1", "--population-size", "2", "--top-k", "1"], None, None),
        (["interpolate", "CCO", "c1ccccc1O", "--steps", "6"], 4, 2),
    ],
)
def test_commands_draw_their_image(
    command, columns, rows, tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    """The tiny random model decodes mostly invalid strings: every row is still drawn, marked."""
    table = tmp_path / "in.csv"
    table.write_text("smiles\nCCO\nc1ccccc1O\nCCN\n")
    image = tmp_path / "grid.png"
    argv = [a.replace("IN", str(table)) for a in command]
    argv += [
        "-o",
        str(tmp_path / "out.csv"),
        "--image",
        str(image),
        "--model",
        str(tiny_checkpoint),
        "--max-length",
        "8",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"and {image}" in capsys.readouterr().err
    size = Image.open(image).size
    if columns is not None:
        assert size == (columns * 250, rows * 220)
    else:  # optimize: each seed, then at most --top-k molecules
        assert size[1] == 220 and size[0] in (3 * 250, 4 * 250, 5 * 250, 6 * 250)
    drawn = image.read_bytes()
    (tmp_path / "out.csv").unlink()
    assert main(argv) == 2  # an existing image is refused without --overwrite, before any work
    assert "grid.png exists" in capsys.readouterr().err
    assert image.read_bytes() == drawn and not (tmp_path / "out.csv").exists()


def test_image_options_are_checked_before_any_work(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = ["-o", str(tmp_path / "out.csv"), "--model", str(tiny_checkpoint)]
    assert main(["sample", "-n", "1", *out, "--image", str(tmp_path / "grid.jpg")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    assert main(["interpolate", "CCO", "C1CC", *out]) == 2
    assert "END is not a valid SMILES" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()

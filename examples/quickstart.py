"""The README's main job, on the pretrained checkpoint shipped in the package (offline):

1. embed the ESOL CSV (1,128 molecules) into informative embeddings, once;
2. a short benchmark on those embeddings: ESOL solubility, one random split, SVR probe, cMIM vs
   ECFP4, with its parity plot;
3. reconstruct six molecules from their latent means, sample six from the aggregate prior and
   five around the first molecule (at the checkpoint's ``config.exploration_radius``), drawn as
   one RDKit grid.

    python examples/quickstart.py [--out runs/quickstart] [--overwrite]

Writes ``OUT/benchmark/`` (results.md/json, parity and PCA plots) and ``OUT/molecules.png``; an
existing ``OUT`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

import cmim_hf
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.drawing import draw_panels, result_panels, save_image
from cmim_hf.embedding import CMIMEmbedder
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.tasks import load_task
from cmim_hf.generation import (
    AggregatePosterior,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
)

LIMITS_SECTION = "README.md, section 'The shipped checkpoint: v3 (issue 21)'"
MOLECULES = [
    "CCOC(=O)c1ccc(N)cc1",
    "c1ccc2[nH]ccc2c1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "COc1ccc2nc(S(=O)Cc3ncc(C)c(OC)c3C)[nH]c2c1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
]


def precomputed(smiles: list[str], embeddings: np.ndarray):
    """A benchmark featurizer that looks the molecules up instead of embedding them again."""
    rows = {text: row for row, text in enumerate(smiles)}
    return lambda batch: embeddings[[rows[text] for text in batch]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        print(f"error: {args.out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = cmim_hf.DEFAULT_CHECKPOINT
    print(f"model: {model_dir} (the pretrained checkpoint shipped in the package)")

    esol = load_task("esol")
    smiles = list(esol.smiles)
    embeddings = CMIMEmbedder(model_dir, on_invalid="nan").embed(smiles)
    print(
        f"1. embedded {Path(esol.source).name}: {embeddings.shape[0]} molecules -> {embeddings.shape[1]}-dim vectors"
    )

    results = run_benchmark(
        {"ECFP4": "ecfp4", "cMIM informative": precomputed(smiles, embeddings)},
        [esol],
        split="random",
        seeds=1,
        probes=("svm",),
        out_dir=args.out / "benchmark",
        progress=False,
    )
    print(
        "2. ESOL solubility, SVR probe with inner CV, one random 80/10/10 split (test RMSE, lower is better):"
    )
    for name in ("ECFP4", "cMIM informative"):
        print(f"   {name:<18} RMSE {results.mean('esol', name, 'svm', 'rmse'):.3f}")
    print(f"   report: {results.files['markdown']}")
    print(f"   parity plot: {results.files['parity']['esol']}")

    model, tokenizer = load_model_for_generation(model_dir)
    recon = reconstruct(model, tokenizer, MOLECULES)
    prior = AggregatePosterior.load(model_dir)
    samples = sample_prior(model, tokenizer, 6, seed=0, prior=prior)
    print(f"3. greedy reconstruction from the latent mean: {sum(recon.exact)} of {len(recon)} exact")
    for source, decoded, exact in zip(recon.inputs, recon.smiles, recon.exact, strict=True):
        print(f"   {source:<44} -> {decoded:<44} {'exact' if exact else ''}")
    print(f"   six samples from the aggregate posterior: {sum(samples.valid)} valid")
    neighbours = sample_neighbourhood(model, tokenizer, MOLECULES[:1], 5, seed=0)
    print(
        f"   five samples around {MOLECULES[0]} (radius {model.config.exploration_radius:.2g}): {sum(neighbours.valid)} valid"
    )
    panels = result_panels(recon) + result_panels(samples) + result_panels(neighbours)
    image = save_image(draw_panels(panels, columns=6), args.out / "molecules.png")
    print(f"   picture (inputs, reconstructions, prior samples, neighbours): {image}")
    print(f"What this checkpoint can and cannot do yet, measured: {LIMITS_SECTION}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's main job, on the pretrained checkpoint shipped in the package (offline):

1. embed the ESOL CSV (1,128 molecules) into informative embeddings;
2. a short benchmark: ESOL solubility, one random split, SVR probe, cMIM vs ECFP4;
3. reconstruct three molecules from their latent means and sample five from the prior.

    python examples/quickstart.py [--out runs/quickstart]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cmim_hf
from cmim_hf.data import load_task
from cmim_hf.embedding import CMIMEmbedder
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.generation import load_model_for_generation, reconstruct, sample_prior


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = cmim_hf.DEFAULT_CHECKPOINT
    print(f"model: {model_dir} (the pretrained checkpoint shipped in the package)")

    esol = load_task("esol")
    embeddings = CMIMEmbedder(model_dir, on_invalid="nan").embed(list(esol.smiles))
    print(
        f"1. embedded {Path(esol.source).name}: {embeddings.shape[0]} molecules -> {embeddings.shape[1]}-dim vectors"
    )

    results = run_benchmark(
        {"ECFP4": "ecfp4", "cMIM informative": model_dir},
        ["esol"],
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
    print(f"   reports: {args.out / 'benchmark'}")

    model, tokenizer = load_model_for_generation(model_dir)
    molecules = ["CCOC(=O)c1ccc(N)cc1", "c1ccc2[nH]ccc2c1", "CC(=O)Oc1ccccc1C(=O)O"]
    recon = reconstruct(model, tokenizer, molecules)
    print("3. greedy reconstruction from the latent mean (exact = same canonical SMILES):")
    for source, decoded, exact in zip(recon.inputs, recon.smiles, recon.exact, strict=True):
        print(f"   {source:<24} -> {decoded:<24} exact={exact}")
    samples = sample_prior(model, tokenizer, 5, seed=0)
    print("   five samples from the prior N(0, I):")
    for smiles, valid in zip(samples.smiles, samples.valid, strict=True):
        print(f"   {smiles:<40} {'valid' if valid else 'INVALID'}")


if __name__ == "__main__":
    main()

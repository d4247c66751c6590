"""The README's main job: embed molecules, compare the embedding with ECFP4, reconstruct.

Uses the shipped checkpoint (``cmim_hf/pretrained/``) when the package has one; until it does,
a tiny randomly initialised cMIM model, so the numbers below only show that every stage runs.

    python examples/quickstart.py [--out runs/quickstart]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import cmim_hf
from cmim_hf.data import load_task
from cmim_hf.embedding import CMIMEmbedder
from cmim_hf.evaluation.benchmark import run_benchmark

SHIPPED_CHECKPOINT = Path(cmim_hf.__file__).with_name("pretrained")


def model_directory(out: Path) -> tuple[Path, str]:
    """The shipped checkpoint, or a tiny random model saved under ``out``."""
    if (SHIPPED_CHECKPOINT / "config.json").is_file():
        return SHIPPED_CHECKPOINT, "shipped pretrained checkpoint"
    torch.manual_seed(0)
    tokenizer = cmim_hf.CMIMTokenizer()
    config = cmim_hf.CMIMConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        encoder_layers=2,
        decoder_layers=2,
        num_attention_heads=4,
        ffn_dim=128,
    )
    directory = out / "random-tiny-cmim"
    cmim_hf.CMIMForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, "tiny RANDOMLY INITIALISED model (no pretrained checkpoint ships yet)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, description = model_directory(args.out)
    print(f"model: {model_dir} ({description})")

    esol = load_task("esol")
    embeddings = CMIMEmbedder(model_dir, on_invalid="nan").embed(list(esol.smiles))
    print(
        f"1. embedded {embeddings.shape[0]} ESOL molecules -> {embeddings.shape[1]}-dim informative embeddings"
    )

    results = run_benchmark(
        {"ECFP4": "ecfp4", "cMIM informative": str(model_dir)},
        ["esol"],
        split="random",
        seeds=1,
        probes=("ridge",),
        out_dir=args.out / "benchmark",
        progress=False,
    )
    print("2. ESOL solubility, ridge probe, one random 80/10/10 split (test RMSE, lower is better):")
    for name in ("ECFP4", "cMIM informative"):
        print(f"   {name:<18} RMSE {results.mean('esol', name, 'ridge', 'rmse'):.3f}")
    print(f"   reports: {args.out / 'benchmark'}")

    model = cmim_hf.CMIMForConditionalGeneration.from_pretrained(model_dir).eval()
    tokenizer = cmim_hf.CMIMTokenizer.from_pretrained(model_dir)
    molecules = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"]
    batch = tokenizer(molecules, padding=True, return_tensors="pt")
    generated = model.generate(**batch, max_new_tokens=24, do_sample=False)
    print("3. greedy reconstruction from the latent mean:")
    for source, decoded in zip(molecules, tokenizer.batch_decode(generated, skip_special_tokens=True)):
        print(f"   {source:<24} -> {decoded}")


if __name__ == "__main__":
    main()

"""Build the SMILES vocabulary shipped as `cmim_hf/models/cmim/vocab.json`.

Reads the MOSES training corpus (`train.csv.gz` of the MOSES data set, not in this repository) and
the MoleculeNet files shipped in `cmim_hf/package_data/moleculenet`, counts atom-level tokens with
`cmim_hf.models.cmim.tokenization_cmim.build_vocab`, and writes the token -> id JSON.

    python examples/build_vocab.py --moses moses_train.csv.gz       # over the shipped vocabulary
    python examples/build_vocab.py --moses other.csv.gz --output /tmp/vocab.json
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from cmim_hf.models.cmim.tokenization_cmim import SPECIAL_TOKENS, build_vocab, split_smiles

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MOLECULENET = REPO / "cmim_hf" / "package_data" / "moleculenet"
DEFAULT_OUTPUT = REPO / "cmim_hf" / "models" / "cmim" / "vocab.json"
SMILES_COLUMNS = ("smiles", "SMILES", "mol")  # bace.csv names its SMILES column "mol"


def read_smiles(path: Path) -> list[str]:
    """All SMILES of a CSV (optionally gzipped), from its first column named like a SMILES column."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in SMILES_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ValueError(
                f"{path}: no SMILES column among {SMILES_COLUMNS}; header is {reader.fieldnames}"
            )
        return [row[column] for row in reader]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moses", type=Path, required=True, help="MOSES train CSV(.gz), column SMILES")
    parser.add_argument("--moleculenet-dir", type=Path, default=DEFAULT_MOLECULENET, help="folder of *.csv")
    parser.add_argument("--min-frequency", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    moses = read_smiles(args.moses)
    print(f"{args.moses}: {len(moses)} SMILES")
    moleculenet: list[str] = []
    for path in sorted(args.moleculenet_dir.glob("*.csv")):
        smiles = read_smiles(path)
        print(f"{path}: {len(smiles)} SMILES")
        moleculenet.extend(smiles)

    def corpus() -> Iterator[str]:
        yield from moses
        yield from moleculenet

    vocab = build_vocab(corpus(), min_frequency=args.min_frequency)
    moses_vocab = build_vocab(moses)
    only_moleculenet = [t for t in vocab if t not in moses_vocab]
    oov = sum(1 for s in moleculenet if any(t not in vocab for t in split_smiles(s)))
    print(
        f"vocabulary: {len(vocab)} tokens ({len(SPECIAL_TOKENS)} special, {len(moses_vocab) - len(SPECIAL_TOKENS)} from MOSES)"
    )
    print(f"tokens only in MoleculeNet: {len(only_moleculenet)}")
    print(f"MoleculeNet molecules with an out-of-vocabulary token: {oov} of {len(moleculenet)}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(vocab, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

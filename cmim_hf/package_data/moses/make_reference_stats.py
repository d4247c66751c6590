"""Regenerate the shipped statistics of MOSES' Test and TestSF sets used by the MOSES metrics.

    python cmim_hf/package_data/moses/make_reference_stats.py [--n-jobs N] [--device cuda]

For each of ``moses_test.csv.gz`` and ``moses_test_scaffolds.csv.gz`` (next to this script) it writes
``<name>_stats.npz``: the mean and covariance of the ChemNet activations of the set's canonical SMILES
(for FCD), its BRICS-fragment and scaffold counts (for Frag and Scaf), and metadata (source file and
sha256, molecule count, RDKit version), as MOSES ships ``test_stats.npz``. Fingerprints are not
shipped (22 MB per set): ``moses_reference_statistics`` computes and caches them on first use.
The ChemNet pass takes about 10 CPU-minutes per set on one thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from cmim_hf.evaluation.moses_metrics import (
    MOSES_DATA,
    MOSES_REFERENCES,
    read_moses_smiles,
    reference_statistics,
    save_reference_statistics,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="processes for RDKit and threads for torch")
    parser.add_argument("--device", default="cpu", help="torch device of ChemNet")
    args = parser.parse_args()
    torch.set_num_threads(args.n_jobs)
    for name, (smiles_file, statistics_file) in MOSES_REFERENCES.items():
        start = time.perf_counter()
        source = MOSES_DATA / smiles_file
        statistics = reference_statistics(read_moses_smiles(source), args.n_jobs, args.device)
        save_reference_statistics(statistics, MOSES_DATA / statistics_file, source)
        print(
            f"{name}: {len(statistics.fingerprints)} molecules -> {statistics_file} in {time.perf_counter() - start:.0f} s"
        )


if __name__ == "__main__":
    main()

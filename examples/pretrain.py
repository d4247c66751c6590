"""Pre-train cMIM on a SMILES corpus: ``cmim pretrain`` (same options, see ``cmim pretrain --help``).

Example (CPU, small model; any CSV/Parquet/SMI corpus with a SMILES column):

    python examples/pretrain.py --train-file moses_train.csv.gz --eval-file moses_test.csv.gz \
        --output-dir runs/cmim-small --objective cmim --max-steps 20000 --batch-size 128

Multi-process: ``torchrun --nproc_per_node 2 examples/pretrain.py ...`` or
``accelerate launch examples/pretrain.py ...`` (no code change).
"""

import sys

from cmim_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))

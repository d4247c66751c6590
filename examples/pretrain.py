"""Pre-train cMIM on a SMILES corpus; same options as ``cmim pretrain --help``.

Example (CPU, small model, MOSES corpus from the shared data folder):

    python examples/pretrain.py --train-file ../shared/data/pretrain/moses_train.csv.gz \
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --output-dir runs/cmim-small \
        --objective cmim --max-steps 20000 --batch-size 128

Multi-process: ``torchrun --nproc_per_node 2 examples/pretrain.py ...`` or
``accelerate launch examples/pretrain.py ...`` (no code change).
"""

import sys

from cmim_hf.training.pretrain import main

if __name__ == "__main__":
    sys.exit(main())

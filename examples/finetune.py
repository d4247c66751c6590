"""Fine-tune a cMIM checkpoint on MoleculeNet or your CSV: ``cmim finetune`` (same options, see
``cmim finetune --help``).

Examples:

    # ESOL, 3 random splits, results beside an earlier frozen-embedding benchmark of the same model
    python examples/finetune.py --model path/to/cmim --tasks esol --seeds 3 --out runs/ft_esol \
        --compare runs/bench_esol/results.json

    # your own data (several label columns = multi-task; empty cells are missing labels)
    python examples/finetune.py --model path/to/cmim --csv my.csv --smiles-col smiles \
        --label-col activity --task classification --split scaffold --save-model --out runs/ft_mine

Writes ``results.json`` / ``results.md`` in the ``cmim benchmark`` format (probe ``finetune``);
``--save-model`` keeps each fine-tuned model (``AutoModelForSequenceClassification``) under
``OUT/models/<task>/seed<N>``.
"""

import sys

from cmim_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))

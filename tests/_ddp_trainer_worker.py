"""One CMIMTrainer SGD step on 8 molecules, in float64 with z = mu; run plainly or under torchrun.

Usage: python _ddp_trainer_worker.py OUT.json   (rank 0 writes the loss and updated parameters)
"""

import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset

sys.path.insert(0, os.path.dirname(__file__))
from helpers import SMILES, make_args, tiny_config  # noqa: E402

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer  # noqa: E402
from cmim_hf.distributed import leave_process_group  # noqa: E402
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainer  # noqa: E402

torch.randn_like = torch.zeros_like  # z = mu: identical codes in both runs
world_size = int(os.environ.get("WORLD_SIZE", "1"))
molecules = SMILES + ["CCN"]  # 8
torch.manual_seed(0)
model = CMIMForConditionalGeneration(tiny_config()).double()
args = make_args(
    Path(sys.argv[1]).parent,
    output_dir=os.path.join(os.path.dirname(sys.argv[1]), f"out{world_size}"),
    per_device_train_batch_size=len(molecules) // world_size,
    learning_rate=1.0,
    objective="cmim",
    ddp_backend="gloo" if world_size > 1 else None,
)
trainer = CMIMTrainer(
    model=model,
    args=args,
    train_dataset=Dataset.from_dict({"smiles": molecules}),
    data_collator=CMIMDataCollator(CMIMTokenizer()),
)
trainer.train()
if trainer.is_world_process_zero():
    logs = next(entry for entry in trainer.state.log_history if "loss/total" in entry)
    params = {name: p.detach().tolist() for name, p in model.named_parameters()}
    with open(sys.argv[1], "w") as handle:
        json.dump({"loss_total": logs["loss/total"], "loss": logs["loss"], "params": params}, handle)
leave_process_group()  # every rank at a barrier, then gloo torn down
# Leave without C++ static destructors: a gloo thread still joinable at interpreter exit aborts a
# finished rank ("terminate called without an active exception", exit -6; seen in CI).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)

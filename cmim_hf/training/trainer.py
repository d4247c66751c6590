"""Pre-training of cMIM with the HF ``Trainer``: training arguments, the loss-combining trainer and
the SMILES data collator.

The model returns logits and the posterior; :class:`CMIMTrainer` combines them with the pure
loss functions of :mod:`cmim_hf.training.losses`:

    total_i = w_r * CE_i + w_l(step) * latent_i + w_c * contrastive_i        (per molecule i)

and normalises by the number of molecules in the whole accumulated (and, under DDP, global) batch,
so that gradient accumulation and multi-process training give the gradients of one big batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from cmim_hf.models.cmim.modeling_cmim import prepare_decoder_inputs
from cmim_hf.training.latent_stats import latent_activity
from cmim_hf.training.losses import (
    amim_latent_loss,
    cmim_contrastive_loss,
    gather_with_grad,
    infonce_loss,
    sequence_cross_entropy,
)
from cmim_hf.training.streaming import StreamingSmilesCorpus

OBJECTIVES = ("cmim", "mim", "infonce", "ae")
LOSS_COMPONENTS = ("reconstruction", "latent", "contrastive", "total")


def parse_floor_schedule(text: str) -> list[tuple[int, float]]:
    """``"0:0.15,1500:0.15,2000:0.3"`` -> ``[(0, 0.15), (1500, 0.15), (2000, 0.3)]``: optimizer steps
    (strictly increasing) and posterior-floor standard deviations in (0, 1), as ``logvar_min`` < 0.

    Raises:
        ValueError: naming the malformed point.
    """
    points = []
    for item in text.split(","):
        step_text, _, sigma_text = item.strip().partition(":")
        try:
            point = (int(step_text), float(sigma_text))
        except ValueError:
            raise ValueError(f"posterior floor schedule: {item.strip()!r} is not STEP:SIGMA") from None
        if point[0] < 0 or not 0.0 < point[1] < 1.0:
            raise ValueError(f"posterior floor schedule: {item.strip()!r} needs STEP >= 0 and 0 < SIGMA < 1")
        if points and point[0] <= points[-1][0]:
            raise ValueError("posterior floor schedule: steps must increase")
        points.append(point)
    return points


def floor_sigma_at(schedule: Sequence[tuple[int, float]], step: int) -> float:
    """Posterior-floor sigma at optimizer ``step``: piecewise linear between the schedule's points,
    constant before the first and after the last."""
    if step <= schedule[0][0]:
        return schedule[0][1]
    for (step_a, sigma_a), (step_b, sigma_b) in zip(schedule, schedule[1:]):
        if step < step_b:
            return sigma_a + (sigma_b - sigma_a) * (step - step_a) / (step_b - step_a)
    return schedule[-1][1]


def first_training_smiles(train_data: Any, n: int) -> list[str]:
    """The first ``n`` usable molecules of a training set (a :class:`StreamingSmilesCorpus` or a
    dataset with a ``"smiles"`` column; fewer if it has fewer)."""
    if isinstance(train_data, StreamingSmilesCorpus):
        return train_data.first_usable_smiles(n)
    return train_data.select(range(min(n, len(train_data))))["smiles"]


def outputs_in_float32(outputs: Any) -> Any:
    """``outputs`` with its logits and latent tensors cast to float32 (in place; bf16 autocast
    leaves them in bfloat16), so that every loss is computed in float32."""
    for name in ("logits", "z", "z_mean", "z_logvar"):
        value = getattr(outputs, name, None)
        if value is not None and value.dtype != torch.float32:
            setattr(outputs, name, value.float())
    return outputs


def launched_as_cpu_processes() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1) and there is no CUDA."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


@dataclass
class CMIMTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the cMIM objective (the terms of :mod:`cmim_hf.training.losses`)."""

    objective: str = field(
        default="cmim",
        metadata={
            "help": "cmim (A-MIM + cMIM term), mim (A-MIM), infonce (A-MIM + InfoNCE) or ae (reconstruction)"
        },
    )
    reconstruction_weight: float = field(default=1.0, metadata={"help": "weight of the token cross-entropy"})
    latent_weight: float = field(
        default=1.0, metadata={"help": "weight of the A-MIM latent term after warm-up"}
    )
    contrastive_weight: float = field(default=1.0, metadata={"help": "weight of the cMIM / InfoNCE term"})
    temperature: float = field(default=0.1, metadata={"help": "tau of the contrastive term"})
    latent_warmup_steps: int = field(
        default=1000, metadata={"help": "optimizer steps over which the latent weight rises linearly from 0"}
    )
    latent_reduction: str = field(
        default="mean", metadata={"help": "reduce the latent term over the K*L dimensions by mean or sum"}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "keep dataset columns: CMIMDataCollator reads 'smiles' or 'input_ids'"},
    )
    gather_negatives: bool = field(
        default=True, metadata={"help": "use the codes of all processes as contrastive negatives"}
    )
    deterministic_steps: int = field(
        default=0, metadata={"help": "first N optimizer steps decode z = mu (no posterior noise)"}
    )
    latent_free_nats: float = field(
        default=0.0, metadata={"help": "per-dimension floor under the prior pull of the latent term"}
    )
    posterior_lr_multiplier: float = field(
        default=1.0, metadata={"help": "learning rate of the posterior head relative to the rest"}
    )
    decoder_token_dropout: float = field(
        default=0.0,
        metadata={"help": "probability of replacing each teacher-forced decoder input token by <mask>"},
    )
    posterior_floor_schedule: str | None = field(
        default=None,
        metadata={
            "help": "STEP:SIGMA,...: the posterior's floor standard deviation, piecewise linear in the "
            "optimizer step (sets config.logvar_min = 2 ln SIGMA each step; saved with each checkpoint)"
        },
    )

    def __post_init__(self):
        if launched_as_cpu_processes():
            # torchrun / accelerate launch on a machine without CUDA: Transformers needs use_cpu and a
            # CPU backend to see the processes at all (else every rank trains alone as rank 0).
            self.use_cpu = True
            self.ddp_backend = self.ddp_backend or "gloo"
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.latent_reduction not in ("mean", "sum"):
            raise ValueError(f"latent_reduction must be 'mean' or 'sum', got {self.latent_reduction!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        for name in ("latent_warmup_steps", "deterministic_steps", "latent_free_nats"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.posterior_lr_multiplier <= 0:
            raise ValueError(f"posterior_lr_multiplier must be positive, got {self.posterior_lr_multiplier}")
        if not 0.0 <= self.decoder_token_dropout < 1.0:
            raise ValueError(f"decoder_token_dropout must be in [0, 1), got {self.decoder_token_dropout}")
        if self.posterior_floor_schedule is not None:
            parse_floor_schedule(self.posterior_floor_schedule)


@dataclass
class CMIMDataCollator:
    """Features with ``"smiles"`` (str) or ``"input_ids"`` (list of ids) -> a right-padded batch
    ``input_ids``/``attention_mask`` (B, T) and teacher-forcing ``labels`` (B, T-1)."""

    tokenizer: Any
    truncation: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if all("input_ids" in f for f in features):
            encoded = [{"input_ids": f["input_ids"]} for f in features]
            batch = self.tokenizer.pad(
                encoded, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"
            )
        elif all("smiles" in f for f in features):
            batch = self.tokenizer(
                [f["smiles"] for f in features],
                padding=True,
                truncation=self.truncation,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
        else:
            raise ValueError("every feature needs an 'input_ids' or a 'smiles' field")
        _, _, labels = prepare_decoder_inputs(
            batch["input_ids"],
            batch["attention_mask"],
            self.tokenizer.bos_token_id,
            self.tokenizer.pad_token_id,
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


class CMIMTrainer(Trainer):
    """``Trainer`` that adds the A-MIM latent term and the contrastive term to the reconstruction.

    Each component (reconstruction, latent, contrastive, total; per-molecule means) is averaged over
    the logging interval and logged as ``loss/<component>``. Evaluation adds ``token_accuracy`` and
    ``exact_match`` of greedy reconstruction with z = mu.
    """

    # compute_loss normalises by the molecules of the whole accumulated, all-process batch.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, CMIMTrainingArguments):
            raise TypeError("CMIMTrainer needs CMIMTrainingArguments")
        # running per-component sums and the molecule count, kept on the device (no sync per step)
        self._component_totals: torch.Tensor | None = None
        schedule = self.args.posterior_floor_schedule
        self._floor_schedule = parse_floor_schedule(schedule) if schedule else None

    # --- loss ------------------------------------------------------------------------------------

    def latent_weight_now(self) -> float:
        """Latent-term weight at the current optimizer step (linear warm-up)."""
        warmup = self.args.latent_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, self.state.global_step / warmup)
        return self.args.latent_weight * ramp

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor:
        """Number of molecules in the accumulated batch, summed over processes."""
        count = torch.tensor(sum(len(batch["input_ids"]) for batch in batch_samples), device=device)
        if self.args.world_size > 1:
            count = self.accelerator.reduce(count, reduction="sum")
        return count

    def per_molecule_losses(self, outputs, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each loss component as a (B,) tensor of per-molecule values."""
        args = self.args
        reconstruction = sequence_cross_entropy(outputs.logits, labels)
        zeros = torch.zeros_like(reconstruction)
        latent, contrastive = zeros, zeros
        if args.objective != "ae":
            latent = amim_latent_loss(
                outputs.z,
                outputs.z_mean,
                outputs.z_logvar,
                reduction=args.latent_reduction,
                free_nats=args.latent_free_nats,
            )
        if args.objective in ("cmim", "infonce"):
            codes = outputs.z
            if args.objective == "infonce":  # a second posterior sample of each molecule is its positive
                codes = outputs.z_mean + torch.exp(0.5 * outputs.z_logvar) * torch.randn_like(outputs.z_mean)
            candidates, offset = gather_with_grad(codes) if args.gather_negatives else (codes, 0)
            if args.objective == "cmim":
                contrastive = cmim_contrastive_loss(
                    outputs.z, args.temperature, negatives=candidates, self_index_offset=offset
                )
            else:
                contrastive = infonce_loss(
                    outputs.z, codes, args.temperature, negatives_b=candidates, self_index_offset=offset
                )
        total = (
            args.reconstruction_weight * reconstruction
            + self.latent_weight_now() * latent
            + args.contrastive_weight * contrastive
        )
        return {
            "reconstruction": reconstruction,
            "latent": latent,
            "contrastive": contrastive,
            "total": total,
        }

    def apply_floor_schedule(self) -> None:
        """Set the posterior floor (``config.logvar_min``) of the current step's schedule point."""
        sigma = floor_sigma_at(self._floor_schedule, self.state.global_step)
        self.model.config.logvar_min = 2.0 * math.log(sigma)

    def in_deterministic_phase(self) -> bool:
        """True while training decodes z = mu (the first ``deterministic_steps`` optimizer steps)."""
        return self.state.global_step < self.args.deterministic_steps

    def _dropped_decoder_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forcing decoder inputs with each token after ``<bos>`` replaced by ``<mask>`` with
        probability ``decoder_token_dropout`` (word dropout: the decoder must read z)."""
        tokenizer = self.processing_class
        decoder_input_ids, decoder_attention_mask, _ = prepare_decoder_inputs(
            inputs["input_ids"], inputs["attention_mask"], tokenizer.bos_token_id, tokenizer.pad_token_id
        )
        drop = torch.rand(decoder_input_ids.shape, device=decoder_input_ids.device)
        drop = (drop < self.args.decoder_token_dropout) & (decoder_attention_mask == 1)
        drop[:, 0] = False
        return {
            "decoder_input_ids": decoder_input_ids.masked_fill(drop, tokenizer.mask_token_id),
            "decoder_attention_mask": decoder_attention_mask,
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if model.training and self.args.decoder_token_dropout > 0:
            inputs.update(self._dropped_decoder_inputs(inputs))
        if model.training and self.in_deterministic_phase():
            inputs["sample_latent"] = False
        if model.training and self._floor_schedule is not None:
            self.apply_floor_schedule()
        outputs = model(**inputs)
        with torch.autocast(labels.device.type, enabled=False):  # under --bf16: losses in float32
            losses = self.per_molecule_losses(outputs_in_float32(outputs), labels)
        if num_items_in_batch is None:  # evaluation, or a plain call: mean over this batch
            loss = losses["total"].mean()
        else:  # sum / molecules of the accumulated global batch; DDP averages over processes
            loss = (
                losses["total"].sum() * self.args.world_size / num_items_in_batch.to(losses["total"].device)
            )
        if model.training:
            self._accumulate_components(losses)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the posterior head's parameters in their own groups at
        ``posterior_lr_multiplier`` times the learning rate."""
        optimizer = super().create_optimizer(model)
        multiplier = self.args.posterior_lr_multiplier
        if multiplier == 1.0:
            return optimizer
        opt_model = self.model if model is None else model
        head = {id(p) for n, p in opt_model.named_parameters() if ".posterior_proj." in f".{n}"}
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in head]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in head]
                optimizer.add_param_group({**group, "params": moved, "lr": group["lr"] * multiplier})
        return optimizer

    def _accumulate_components(self, losses: dict[str, torch.Tensor]) -> None:
        total = losses["total"].detach()
        step = torch.stack(
            [losses[name].detach().sum() for name in LOSS_COMPONENTS] + [total.new_tensor(len(total))]
        )
        step = step.double()
        self._component_totals = step if self._component_totals is None else self._component_totals + step

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the step-averaged loss components to the training logs."""
        if "loss" in logs and self._component_totals is not None:
            totals = self._component_totals
            if self.args.world_size > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            for name, value in zip(LOSS_COMPONENTS, (totals[:-1] / totals[-1]).tolist()):
                logs[f"loss/{name}"] = value
            logs["latent_weight"] = self.latent_weight_now()
            if self._floor_schedule is not None:
                logs["posterior_floor_sigma"] = self.model.config.posterior_floor_std
            self._component_totals = None
        super().log(logs, start_time)

    def push_to_hub(self, *args, prior_molecules: int = 20000, **kwargs):
        """``Trainer.push_to_hub`` (model, tokenizer, remote code and the measured card of
        :meth:`create_model_card`), with the aggregate posterior (``cmim sample``'s default prior)
        fitted to the first ``prior_molecules`` training molecules (0: none) in the upload."""
        smiles_column = getattr(self.train_dataset, "column_names", None) or []
        has_smiles = isinstance(self.train_dataset, StreamingSmilesCorpus) or "smiles" in smiles_column
        if self.is_world_process_zero() and prior_molecules >= 2 and has_smiles:
            from cmim_hf.generation.sampling import fit_aggregate_posterior

            smiles = first_training_smiles(self.train_dataset, prior_molecules)
            source = f"first {len(smiles)} training molecules"
            prior = fit_aggregate_posterior(self.model, self.processing_class, smiles, source=source)
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            prior.save(self.args.output_dir)
        return super().push_to_hub(*args, **kwargs)

    def create_model_card(self, **kwargs) -> None:
        """Write the cMIM model card (measured results only) instead of the Trainer's generic one."""
        from cmim_hf.model_card import create_cmim_model_card

        create_cmim_model_card(self, **kwargs)

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """A :class:`StreamingSmilesCorpus` restores its own position on ``--resume``
        (``resume_from``): nothing to skip. Other datasets are fast-forwarded batch by batch."""
        if isinstance(self.train_dataset, StreamingSmilesCorpus):
            return dataloader
        return super().get_resumed_dataloader(dataloader, num_batches)

    # --- evaluation ------------------------------------------------------------------------------

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False, **kwargs):
        """Evaluation reads every molecule: ``dataloader_drop_last`` (whole contrastive batches) is for
        training only, so a held-out set smaller than one batch is still measured in full."""
        if is_training or not self.args.dataloader_drop_last:
            return super()._get_dataloader(
                dataset, description, batch_size, sampler_fn, is_training, **kwargs
            )
        self.args.dataloader_drop_last = False
        try:
            return super()._get_dataloader(
                dataset, description, batch_size, sampler_fn, is_training, **kwargs
            )
        finally:
            self.args.dataloader_drop_last = True

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """The Trainer's evaluation (objective at z = mu) plus reconstruction token accuracy and
        exact match. Greedy decoding from mu reproduces a molecule exactly iff every teacher-forced
        argmax is right, so one teacher-forced pass measures greedy exact match."""
        metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        reconstruction = self.reconstruction_metrics(eval_dataset)
        prefixed = {f"{metric_key_prefix}_{name}": value for name, value in reconstruction.items()}
        metrics.update(prefixed)
        self.log(prefixed)
        return metrics

    @torch.no_grad()
    def reconstruction_metrics(self, eval_dataset=None) -> dict[str, float]:
        """Token accuracy and exact match of greedy reconstruction (z = mu) on the eval set, and the
        activity of its codes (active units and directions, participation ratio; :mod:`cmim_hf.training.latent_stats`)."""
        from cmim_hf.evaluation.metrics import load_metric

        metric = load_metric("reconstruction")
        model = self.model.eval()
        z_means = []
        for inputs in self.get_eval_dataloader(eval_dataset):
            inputs = self._prepare_inputs(inputs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            predictions, labels, z_mean = self.accelerator.gather_for_metrics(
                (
                    self.accelerator.pad_across_processes(
                        outputs.logits.argmax(dim=-1), dim=1, pad_index=-100
                    ),
                    self.accelerator.pad_across_processes(labels, dim=1, pad_index=-100),
                    outputs.z_mean,
                )
            )
            z_means.append(z_mean.float().cpu())
            keep = labels != -100
            metric.add_batch(
                predictions=[row[mask].tolist() for row, mask in zip(predictions, keep)],
                references=[row[mask].tolist() for row, mask in zip(labels, keep)],
            )
        results = metric.compute()
        codes = torch.cat(z_means)
        if len(codes) >= 2:
            activity = latent_activity(codes)
            results.update({key: value for key, value in activity.items() if key != "latent_dims"})
        return results

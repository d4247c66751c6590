"""Encoding, decoding, reconstruction, priors (the aggregate posterior), sampling and interpolation.

Latent codes are (N, K, L) float32 CPU tensors; every function runs in batches on the model's
device in eval mode (the training flag is restored) and returns a result of
:mod:`cmim_hf.generation.results`. Streamed variants (``iter_*``) draw the same random codes as
their one-call functions, one batch at a time; each one-call function is its ``iter_*`` function
with the batches joined (:func:`one_call_form`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from cmim_hf import chem
from cmim_hf.checkpoints import CheckpointError
from cmim_hf.generation.grammar import SmilesGrammarLogitsProcessor
from cmim_hf.generation.metrics import rdkit_validity, tanimoto_similarity
from cmim_hf.generation.results import (
    GenerationResult,
    InterpolationResult,
    NeighbourhoodResult,
    ReconstructionResult,
)
from cmim_hf.outputs import atomic_output
from cmim_hf.training.latent_stats import fit_gaussian, gaussian_sampling_factor, sample_gaussian

InterpolationMethod = Literal["linear", "slerp"]
INTERPOLATION_METHODS: tuple[str, ...] = ("linear", "slerp")
DEFAULT_BATCH_SIZE = 256
# Longest default decode. A code far from every training code can decode without <eos> until the
# position table ends (1,023 tokens for a 1,024-position model); every molecule in a batch then
# waits for it. Drug-like molecules (MOSES, MoleculeNet) need far fewer tokens.
DEFAULT_MAX_NEW_TOKENS = 256


# ---------------------------------------------------------------------------------------------
# Encoding and decoding
# ---------------------------------------------------------------------------------------------


@contextmanager
def _inference(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _as_list(smiles: str | Sequence[str]) -> list[str]:
    return [smiles] if isinstance(smiles, str) else list(smiles)


def _no_latents(model: PreTrainedModel) -> torch.Tensor:
    """The (0, K, L) latent codes of an empty result."""
    return torch.zeros(0, model.config.num_latents, model.config.latent_size)


def encode_posterior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior q(z|x) of molecules: N SMILES -> (mu, log-variance), each (N, K, L) float32 on the
    CPU. Each SMILES is first written as the checkpoint's training SMILES were
    (``config.smiles_normalization``).

    Raises:
        InvalidSmilesError: for the first SMILES RDKit rejects (naming it and its position).
        ValueError: for a SMILES with more tokens than the model's ``max_position_embeddings``.
    """
    smiles = _as_list(smiles)
    for index, s in enumerate(smiles):
        chem.parse_smiles(s, index=index)
    scheme = getattr(model.config, "smiles_normalization", None) or "none"
    smiles = [chem.normalize_smiles(s, scheme) for s in smiles]
    limit = model.config.max_position_embeddings
    for index, ids in enumerate(tokenizer(smiles)["input_ids"]):
        if len(ids) > limit:
            raise ValueError(
                f"SMILES at row {index} ({smiles[index]!r}) has {len(ids)} tokens; the model reads at most {limit}"
            )
    means, logvars = [], []
    with _inference(model):
        for part in _batches(len(smiles), batch_size):
            batch = tokenizer(smiles[part], padding=True, return_tensors="pt").to(model.device)
            posterior = model.encode(batch["input_ids"], batch["attention_mask"])
            means.append(posterior.z_mean.float().cpu())
            logvars.append(posterior.z_logvar.float().cpu())
    if not means:
        return _no_latents(model), _no_latents(model)
    return torch.cat(means), torch.cat(logvars)


def encode_smiles(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Posterior means mu of molecules: N SMILES -> (N, K, L) float32 CPU tensor (see
    :func:`encode_posterior`, which also gives the log-variances and raises the same errors)."""
    return encode_posterior(model, tokenizer, smiles, batch_size)[0]


def decode_latents(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    z: torch.Tensor,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> list[str]:
    """Decode latent codes (N, K, L) to N SMILES strings (greedy or beam search, no sampling).

    Args:
        max_new_tokens: longest decode (default: ``DEFAULT_MAX_NEW_TOKENS`` = 256), never more than
            the position table holds (``max_position_embeddings - 1``).
        grammar_constrained: never decode a token that makes the SMILES syntactically impossible
            (:class:`~cmim_hf.generation.grammar.SmilesGrammarLogitsProcessor`). A code whose decode
            would end with a ring or branch open then decodes up to ``max_new_tokens``.
    """
    max_new_tokens = min(max_new_tokens or DEFAULT_MAX_NEW_TOKENS, model.config.max_position_embeddings - 1)
    processors = (
        LogitsProcessorList([SmilesGrammarLogitsProcessor(tokenizer)]) if grammar_constrained else None
    )
    smiles: list[str] = []
    with _inference(model):
        for part in _batches(len(z), batch_size):
            ids = model.decode_latents(
                z[part],
                num_beams=num_beams,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                logits_processor=processors,
            )
            smiles += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return smiles


def _decoded(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, z: torch.Tensor, decoding: tuple[Any, ...]
) -> dict[str, Any]:
    """The fields every result has for codes ``z``: their decoded ``smiles`` (:func:`decode_latents`
    with ``decoding`` = num_beams, max_new_tokens, batch_size, grammar_constrained), one RDKit
    ``valid`` flag each, and the ``latents`` themselves."""
    smiles = decode_latents(model, tokenizer, z, *decoding)
    return {"smiles": smiles, "valid": rdkit_validity(smiles), "latents": z}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


class _NormalStream:
    """The ``total`` standard normal values of one ``torch.randn(total, generator=generator)``
    call, handed out in pieces of any size without drawing them all.

    Torch's CPU generator fills a tensor of 16 values or more with uniforms and turns each group
    of 16 into normals (Box-Muller), redrawing the last 16 when the size is not a multiple of 16.
    Drawing pieces whose sizes are multiples of 16, with whatever is left drawn whole as the last
    piece, therefore gives the same values as the one call (``test_normal_stream_matches_one_draw``
    checks it). At most ``count + 31`` values are drawn at once.
    """

    def __init__(self, total: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> None:
        self.left = total
        self.generator = generator
        self.dtype = dtype
        self.buffer = torch.zeros(0, dtype=dtype)

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` values, (count,) of ``dtype``."""
        if count > len(self.buffer) + self.left:
            raise ValueError(f"{count} values asked for, {len(self.buffer) + self.left} left")
        if count > len(self.buffer):
            size = min(self.left, -(-(count - len(self.buffer)) // 16) * 16)
            if self.left - size < 16:  # a last piece under 16 values would be drawn another way
                size = self.left
            piece = torch.randn(size, generator=self.generator, dtype=self.dtype)
            self.left -= size
            self.buffer = torch.cat([self.buffer, piece]) if len(self.buffer) else piece
        values, self.buffer = self.buffer[:count], self.buffer[count:].clone()
        return values


def concat_results(pieces: list[Any], empty: Any) -> Any:
    """One result from per-batch results of the same type (lists joined, tensors and arrays
    concatenated, other fields taken from the first piece); ``empty`` when there are none."""
    if not pieces:
        return empty
    joined = {}
    for item in dataclasses.fields(pieces[0]):
        values = [getattr(piece, item.name) for piece in pieces]
        if isinstance(values[0], torch.Tensor):
            joined[item.name] = torch.cat(values)
        elif isinstance(values[0], np.ndarray):
            joined[item.name] = np.concatenate(values)
        elif isinstance(values[0], list) and item.name != "seeds":
            joined[item.name] = [value for part in values for value in part]
        else:
            joined[item.name] = values[0]
    return type(pieces[0])(**joined)


def one_call_form(stream: Callable[..., Iterator[Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function it decorates, ``join(pieces, arguments) -> result`` (its name and
    docstring kept), becomes the one-call form of ``stream``, an ``iter_*`` function: it takes
    ``stream``'s parameters, runs it and joins the list of its batches (``arguments``: every
    parameter's value, defaults applied). Errors ``stream`` raises at the call are raised the same."""
    signature = inspect.signature(stream)

    def decorate(join: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(join)
        def one_call(*args: Any, **kwargs: Any) -> Any:
            arguments = signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            return join(list(stream(*args, **kwargs)), arguments.arguments)

        del one_call.__wrapped__  # its signature is the stream's, not the join's
        one_call.__signature__ = signature.replace(
            return_annotation=inspect.signature(join).return_annotation
        )
        return one_call

    return decorate


# ---------------------------------------------------------------------------------------------
# Reconstruction, sampling, interpolation
# ---------------------------------------------------------------------------------------------


def reconstruct(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> ReconstructionResult:
    """Encode molecules (z = mu) and decode them back (``grammar_constrained``: as :func:`decode_latents`).

    Raises:
        InvalidSmilesError: for an invalid input SMILES (naming it and its position).
    """
    inputs = _as_list(smiles)
    z = encode_smiles(model, tokenizer, inputs, batch_size)
    decoded = _decoded(model, tokenizer, z, (num_beams, max_new_tokens, batch_size, grammar_constrained))
    pairs = zip(decoded["smiles"], inputs, decoded["valid"])
    exact = [ok and chem.canonicalize(d) == chem.canonicalize(i) for d, i, ok in pairs]
    return ReconstructionResult(
        **decoded, inputs=inputs, exact=exact, similarity=tanimoto_similarity(decoded["smiles"], inputs)
    )


AGGREGATE_POSTERIOR_FILE = "aggregate_posterior.safetensors"


@dataclass
class AggregatePosterior:
    """The aggregate posterior of a checkpoint: a Gaussian N(mean, covariance) fitted to the posterior
    means of ``molecules`` training molecules, stored next to the weights as
    ``aggregate_posterior.safetensors``. Codes drawn from it lie where real codes lie; codes drawn
    from N(0, I) mostly do not (the latent uses a few directions at a smaller scale).

    mean: (D,) float64, D = K * L; covariance: (D, D) float64.
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    molecules: int
    source: str = ""

    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator, scale: float = 1.0):
        """``n`` codes (n, K, L) float32 from N(mean, scale^2 covariance)."""
        draws = sample_gaussian(self.mean, gaussian_sampling_factor(self.covariance), n, generator, scale)
        return draws.reshape(n, *shape)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/aggregate_posterior.safetensors`` (through a temporary file and a rename)."""
        from safetensors.torch import save_file

        path = Path(folder) / AGGREGATE_POSTERIOR_FILE
        tensors = {
            "mean": self.mean.double().contiguous(),
            "covariance": self.covariance.double().contiguous(),
        }
        metadata = {"molecules": str(self.molecules), "source": self.source}
        with atomic_output(path, wait=True) as partial:
            save_file(tensors, str(partial), metadata=metadata)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o666 & ~umask)  # like any file the user writes, not safetensors' mode
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> AggregatePosterior | None:
        """The aggregate posterior stored in a checkpoint folder, or None if it has none.

        Raises:
            CheckpointError: for an unreadable file.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(folder) / AGGREGATE_POSTERIOR_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                mean, covariance = handle.get_tensor("mean"), handle.get_tensor("covariance")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None
        return cls(mean, covariance, int(metadata.get("molecules", 0)), metadata.get("source", ""))


def fit_aggregate_posterior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: Sequence[str],
    source: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> AggregatePosterior:
    """Fit N(mean, covariance) to the posterior means (z = mu) of valid training molecules.

    Raises:
        InvalidSmilesError / ValueError: as :func:`encode_smiles` (filter the molecules first).
    """
    codes = encode_smiles(model, tokenizer, smiles, batch_size)
    mean, covariance = fit_gaussian(codes)
    return AggregatePosterior(mean, covariance, len(codes), source)


def iter_sample_prior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    scale: float = 1.0,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prior: AggregatePosterior | None = None,
    grammar_constrained: bool = False,
) -> Iterator[GenerationResult]:
    """:func:`sample_prior` one batch at a time: a :class:`GenerationResult` for each ``batch_size``
    codes, drawn just before they are decoded, so memory does not grow with ``n``. Together the
    batches are :func:`sample_prior`'s molecules and codes, whatever ``batch_size``.

    Raises:
        ValueError: for a negative ``n`` or ``scale``, or a prior of another dimension (at the call).
    """
    if n < 0 or scale < 0:
        raise ValueError(f"n and scale must be non-negative, got n={n}, scale={scale}")
    shape = (model.config.num_latents, model.config.latent_size)
    dims = shape[0] * shape[1]
    if prior is not None and prior.mean.numel() != dims:
        raise ValueError(f"the aggregate posterior has {prior.mean.numel()} dimensions, the model {shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    decoding = (num_beams, max_new_tokens, batch_size, grammar_constrained)

    def batches() -> Iterator[GenerationResult]:
        if prior is None:
            noise = _NormalStream(n * dims, _generator(seed), torch.float32)
        else:  # as AggregatePosterior.sample: float64 standard normals through the Cholesky factor
            mean, factor = prior.mean.double(), gaussian_sampling_factor(prior.covariance).double()
            noise = _NormalStream(n * dims, _generator(seed), torch.float64)
        for part in _batches(n, batch_size):
            count = part.stop - part.start
            if prior is None:
                z = scale * noise.take(count * dims).reshape(count, *shape)
            else:
                draws = noise.take(count * dims).reshape(count, dims)
                z = (mean + scale * draws @ factor.T).float().reshape(count, *shape)
            yield GenerationResult(**_decoded(model, tokenizer, z, decoding))

    return batches()


@one_call_form(iter_sample_prior)
def sample_prior(pieces: list[GenerationResult], arguments: dict[str, Any]) -> GenerationResult:
    """Decode ``n`` codes drawn from ``prior`` (an :class:`AggregatePosterior`, with its covariance
    scaled by ``scale^2``) or, when it is None, from N(0, scale^2 I). ``scale`` < 1 trades diversity
    for validity; ``grammar_constrained``: as :func:`decode_latents`. The same molecules for any
    ``batch_size``; :func:`iter_sample_prior` gives them batch by batch."""
    return concat_results(pieces, GenerationResult([], [], _no_latents(arguments["model"])))


def iter_sample_neighbourhood(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: str | Sequence[str],
    n_per_seed: int,
    radius: float | None = None,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> Iterator[NeighbourhoodResult]:
    """:func:`sample_neighbourhood` one batch at a time: a :class:`NeighbourhoodResult` (every seed,
    ``seed_index`` into them) for each ``batch_size`` molecules, so memory grows with the number
    of seeds but not with ``n_per_seed``. Together the batches are :func:`sample_neighbourhood`'s
    result, whatever ``batch_size``.

    Raises:
        InvalidSmilesError: for an invalid seed SMILES (at the call).
    """
    if radius is None:
        radius = model.config.exploration_radius
    if n_per_seed < 0 or radius < 0:
        raise ValueError(f"n_per_seed and radius must be non-negative, got {n_per_seed}, {radius}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed_smiles = _as_list(seeds)
    mu = encode_smiles(model, tokenizer, seed_smiles, batch_size)  # (S, K, L)
    shape, dims = mu.shape[1:], mu[0].numel() if len(mu) else 0

    decoding = (num_beams, max_new_tokens, batch_size, grammar_constrained)

    def batches() -> Iterator[NeighbourhoodResult]:
        # the noise of all S * n codes, seed-major, in the order one (S, n, K, L) draw gives it
        noise = _NormalStream(len(seed_smiles) * n_per_seed * dims, _generator(seed), torch.float32)
        for part in _batches(len(seed_smiles) * n_per_seed, batch_size):
            seed_index = [j // n_per_seed for j in range(part.start, part.stop)]
            count = len(seed_index)
            z = mu[seed_index] + radius * noise.take(count * dims).reshape(count, *shape)
            decoded = _decoded(model, tokenizer, z, decoding)
            yield NeighbourhoodResult(
                **decoded,
                seeds=seed_smiles,
                seed_index=seed_index,
                similarity=tanimoto_similarity(decoded["smiles"], [seed_smiles[i] for i in seed_index]),
            )

    return batches()


@one_call_form(iter_sample_neighbourhood)
def sample_neighbourhood(pieces: list[NeighbourhoodResult], arguments: dict[str, Any]) -> NeighbourhoodResult:
    """Decode ``n_per_seed`` codes mu(seed) + radius * N(0, I) around each seed molecule; ``radius``
    None is the checkpoint's ``config.exploration_radius`` (2 posterior floor stds: v2 0.1, v3 0.6).

    Molecules come grouped by seed (all samples of seed 0 first); ``grammar_constrained``: as
    :func:`decode_latents`. The same molecules for any ``batch_size``;
    :func:`iter_sample_neighbourhood` gives them batch by batch.

    Raises:
        InvalidSmilesError: for an invalid seed SMILES (naming it and its position).
    """
    empty = NeighbourhoodResult([], [], _no_latents(arguments["model"]), seeds=_as_list(arguments["seeds"]))
    return concat_results(pieces, empty)


def interpolation_path(
    z_start: torch.Tensor, z_end: torch.Tensor, t: torch.Tensor, method: InterpolationMethod = "linear"
) -> torch.Tensor:
    """Points between two codes: (K, L), (K, L), t (N,) -> (N, K, L).

    ``"slerp"`` moves along the great circle between the flattened codes (Shoemake 1985; the
    usual choice for Gaussian latents) and falls back to linear for (anti)parallel codes.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    a, b = z_start.double().flatten(), z_end.double().flatten()  # (K*L,)
    t = t.double().unsqueeze(1)  # (N, 1)
    cos_omega = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos_omega.clamp(-1.0, 1.0))
    if method == "linear" or torch.sin(omega).abs() < 1e-6:
        path = (1 - t) * a + t * b
    else:
        path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return path.reshape(-1, *z_start.shape).to(z_start.dtype)


def iter_interpolate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    start: str,
    end: str,
    steps: int = 10,
    method: InterpolationMethod = "linear",
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> Iterator[InterpolationResult]:
    """:func:`interpolate` one batch at a time: an :class:`InterpolationResult` for each
    ``batch_size`` points of the path (its ``t`` those points' positions). Only the positions
    (4 bytes a step) are computed for the whole path at once, as one ``torch.linspace``.

    Raises:
        ValueError / InvalidSmilesError: as :func:`interpolate` (at the call).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two end points), got {steps}")
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mu = encode_smiles(model, tokenizer, [start, end], batch_size)
    t = torch.linspace(0.0, 1.0, steps)

    decoding = (num_beams, max_new_tokens, batch_size, grammar_constrained)

    def batches() -> Iterator[InterpolationResult]:
        for part in _batches(steps, batch_size):
            z = interpolation_path(mu[0], mu[1], t[part], method)
            yield InterpolationResult(
                **_decoded(model, tokenizer, z, decoding),
                start=start,
                end=end,
                t=t[part].tolist(),
                method=method,
            )

    return batches()


@one_call_form(iter_interpolate)
def interpolate(pieces: list[InterpolationResult], arguments: dict[str, Any]) -> InterpolationResult:
    """Decode ``steps`` evenly spaced points (end points included) between the codes mu(start)
    and mu(end), along a straight line (``"linear"``) or a great circle (``"slerp"``);
    ``grammar_constrained``: as :func:`decode_latents`.

    Raises:
        InvalidSmilesError: if ``start`` or ``end`` is invalid.
    """
    return concat_results(pieces, None)

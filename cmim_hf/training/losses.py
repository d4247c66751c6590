"""Loss functions of MIM / cMIM / InfoNCE training, as pure tensor functions.

The objectives are MolMIM's A-MIM loss (Reidenbach et al., arXiv 2208.09016: the reconstruction
term ``-log p(x|z)`` and the latent term ``-1/2 [log q(z|x) + log N(z; 0, I)]``) and cMIM's
contrastive term (Livne, arXiv 2502.19642), with InfoNCE as a baseline; each function's docstring
writes its formula out. Every function here takes plain tensors and returns **per-example** losses
of shape ``(B,)``: the caller (the trainer) reduces over the batch, which is what correct gradient
accumulation needs.

Notation: ``B`` batch size, ``T`` sequence length, ``V`` vocabulary size, ``K`` number of latent
vectors, ``L`` latent width. Latent codes are ``(B, K, L)`` or ``(B, N)``; every function flattens all
dimensions but the batch one.

Reduced-precision inputs (float16 / bfloat16) are upcast to float32 inside each function, so the
losses are computed in at least float32; float64 inputs stay float64.

Multi-process contrastive losses: :func:`gather_with_grad` concatenates the codes of all processes
(keeping gradients, so each process's loss also pushes the other processes' codes); the contrastive
functions then take the gathered tensor as ``negatives`` / ``negatives_b`` and the local rows' offset
in it as ``self_index_offset``. With ``P`` processes of equal local batch ``B/P``, the mean over ranks
of the local mean losses, and the DDP-averaged gradients, equal those of one process on the whole
batch ``B``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "sequence_cross_entropy",
    "gaussian_log_density",
    "amim_latent_loss",
    "cmim_contrastive_loss",
    "infonce_loss",
    "gather_with_grad",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _upcast(x: Tensor) -> Tensor:
    """Return ``x`` in at least float32 (float64 stays float64)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


# ---------------------------------------------------------------------------------------------
# Reconstruction
# ---------------------------------------------------------------------------------------------
def sequence_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Per-sequence mean token cross-entropy, ``-log p(x|z)``, the reconstruction term of A-MIM.

    Args:
        logits: ``(B, T, V)`` unnormalised scores of the next token (already aligned with
            ``labels``: position ``t`` of ``logits`` predicts ``labels[:, t]``).
        labels: ``(B, T)`` integer token ids; positions equal to ``ignore_index`` (padding) are
            ignored.
        ignore_index: label value that marks ignored positions.

    Returns:
        ``(B,)``: for each sequence, the mean over its non-ignored positions of
        ``-log softmax(logits)[label]``. A sequence with no non-ignored position gets ``0``
        (not NaN), and contributes no gradient.

    The batch-level reconstruction loss is the mean of this vector (molecule-weighted, not
    token-weighted); under gradient accumulation divide the *sum* of it by the number of
    molecules in the whole accumulated batch.
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"expected logits (B, T, V) and labels (B, T); got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    b, t, v = logits.shape
    token_ce = F.cross_entropy(
        _upcast(logits).reshape(b * t, v),
        labels.reshape(b * t),
        ignore_index=ignore_index,
        reduction="none",
    ).view(b, t)  # 0 at ignored positions
    n_tokens = (labels != ignore_index).sum(dim=1)
    return token_ce.sum(dim=1) / n_tokens.clamp(min=1).to(token_ce.dtype)


# ---------------------------------------------------------------------------------------------
# A-MIM latent term
# ---------------------------------------------------------------------------------------------
def gaussian_log_density(x: Tensor, mean: Tensor | float, logvar: Tensor | float) -> Tensor:
    """Elementwise log-density of a diagonal Gaussian.

    ``log N(x; mean, exp(logvar)) = -1/2 [log(2 pi) + logvar + (x - mean)^2 exp(-logvar)]``

    Args:
        x: any shape.
        mean, logvar: tensors broadcastable to ``x`` (or Python numbers).

    Returns:
        Tensor of the broadcast shape (``x.shape`` in the usual case).
    """
    x = _upcast(x)
    mean = _upcast(torch.as_tensor(mean, dtype=x.dtype, device=x.device))
    logvar = _upcast(torch.as_tensor(logvar, dtype=x.dtype, device=x.device))
    return -0.5 * (_LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def amim_latent_loss(
    z: Tensor, z_mean: Tensor, z_logvar: Tensor, reduction: str = "mean", free_nats: float = 0.0
) -> Tensor:
    """A-MIM latent term ``-1/2 [log q(z|x) + log N(z; 0, I)]`` (MolMIM, arXiv 2208.09016).

    Args:
        z: ``(B, K, L)`` or ``(B, N)`` posterior sample (``z = mean + exp(logvar/2) * eps``).
        z_mean: same shape as ``z``, posterior mean.
        z_logvar: broadcastable to ``z`` (e.g. ``(B, 1, 1)`` for one variance per molecule),
            posterior log-variance: the predicted one (clamped by the
            model) or, for the "dense latent" variant, the one drawn to sample ``z``.
        reduction: how the latent dimensions are reduced: ``"mean"`` (default, BioNeMo MolMIM
            convention, scale independent of the latent size) or ``"sum"``.
        free_nats: per-dimension information floor ("free bits"): the prior pull
            ``-1/2 log N(z_d; 0, 1) = 1/4 log(2 pi) + z_d^2 / 4`` is replaced by
            ``1/4 log(2 pi) + max(z_d^2 / 4, free_nats)``, so codes within ``|z_d| < 2 sqrt(free_nats)``
            feel no pull towards 0. ``0`` (default) is the plain A-MIM term.

    Returns:
        ``(B,)`` per-molecule latent loss. Gradients flow into ``z``, ``z_mean`` and ``z_logvar``.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if free_nats < 0:
        raise ValueError(f"free_nats must be >= 0, got {free_nats}")
    log_q = gaussian_log_density(z, z_mean, z_logvar)
    prior_pull = -0.5 * gaussian_log_density(z, 0.0, 0.0)
    if free_nats > 0:
        constant = 0.25 * _LOG_2PI
        prior_pull = constant + (prior_pull - constant).clamp(min=free_nats)
    per_dim = -0.5 * log_q + prior_pull
    flat = per_dim.reshape(z.shape[0], -1)
    return flat.mean(dim=1) if reduction == "mean" else flat.sum(dim=1)


# ---------------------------------------------------------------------------------------------
# Contrastive terms
# ---------------------------------------------------------------------------------------------
def _normalised_codes(z: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(B, D)`` L2-normalised flattened codes (in at least float32)."""
    return F.normalize(_upcast(z).reshape(z.shape[0], -1), dim=1)


def _candidates(z: Tensor, negatives: Tensor | None, self_index_offset: int) -> tuple[Tensor, int]:
    """Return (normalised candidate codes (N, D), offset of the local rows in them)."""
    if negatives is None:
        return _normalised_codes(z), 0
    if negatives.shape[1:] != z.shape[1:]:
        raise ValueError(
            f"negatives {tuple(negatives.shape)} and codes {tuple(z.shape)} differ beyond the batch dimension"
        )
    if not 0 <= self_index_offset <= negatives.shape[0] - z.shape[0]:
        raise ValueError(
            f"self_index_offset={self_index_offset} puts the local batch of {z.shape[0]} rows outside "
            f"the {negatives.shape[0]} gathered rows"
        )
    return _normalised_codes(negatives), self_index_offset


def cmim_contrastive_loss(
    z: Tensor,
    tau: float = 0.1,
    negatives: Tensor | None = None,
    self_index_offset: int = 0,
) -> Tensor:
    """cMIM contrastive term ``-log p(k=1 | z_i, x_i)`` (cMIM, arXiv 2502.19642).

    With ``s_ij = cos(z_i, z_j)`` over ``n`` candidates (``n = B``, or ``N_all`` when gathered) and
    ``s_ii = 1``::

        p(k=1 | z_i, x_i) = exp(1/tau) / (exp(1/tau) + 1/(n-1) * sum_{j != i} exp(s_ij/tau))
        -log p            = softplus(logsumexp_{j != i}((s_ij - 1)/tau) - log(n - 1))

    (the second, numerically stable form is what is computed). The ``1/(n-1)`` average keeps the
    scale independent of the batch size. All gradient flows through the negatives ``s_ij, j != i``.

    Args:
        z: ``(B, K, L)`` or ``(B, N)`` codes (posterior samples), flattened to ``(B, D)``.
        tau: temperature (> 0).
        negatives: optional ``(N_all, ...)`` codes gathered from all processes (e.g. by
            :func:`gather_with_grad`), containing the local batch ``z`` at rows
            ``[self_index_offset, self_index_offset + B)``. The self-pair is excluded by index.
            ``None``: the other rows of ``z`` are the negatives.
        self_index_offset: row of ``z[0]`` in ``negatives``.

    Returns:
        ``(B,)`` per-molecule contrastive loss; zeros (still attached to the graph) when there is a
        single candidate (``n = 1``).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    zn = _normalised_codes(z)
    cand, offset = _candidates(z, negatives, self_index_offset)
    b, n = zn.shape[0], cand.shape[0]
    if n <= 1:
        return zn.sum(dim=1) * 0.0
    logits = (zn @ cand.T - 1.0) / tau  # (B, n), <= ~0
    rows = torch.arange(b, device=zn.device)
    self_mask = torch.zeros(b, n, dtype=torch.bool, device=zn.device)
    self_mask[rows, rows + offset] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.softplus(torch.logsumexp(logits, dim=1) - math.log(n - 1))


def infonce_loss(
    z_a: Tensor,
    z_b: Tensor,
    tau: float = 0.1,
    negatives_b: Tensor | None = None,
    self_index_offset: int = 0,
) -> Tensor:
    """InfoNCE baseline ``-log(exp(s_ii'/tau) / sum_j exp(s_ij'/tau))`` (van den Oord et al., arXiv 1807.03748).

    ``z_a`` and ``z_b`` are two posterior samples of the same molecules: row ``i`` of ``z_b`` is the
    positive of row ``i`` of ``z_a``, the other rows of ``z_b`` (or of ``negatives_b``) are its
    negatives; the sum in the denominator runs over all candidates, positive included. This is the
    one-directional loss; a symmetric variant is the mean of ``infonce_loss(a, b)`` and
    ``infonce_loss(b, a)``.

    Args:
        z_a, z_b: ``(B, K, L)`` or ``(B, N)`` codes, flattened to ``(B, D)``, cosine similarity.
        tau: temperature (> 0).
        negatives_b: optional ``(N_all, ...)`` gathered ``z_b`` of all processes, containing the local
            ``z_b`` at rows ``[self_index_offset, self_index_offset + B)``.
        self_index_offset: row of ``z_b[0]`` in ``negatives_b``.

    Returns:
        ``(B,)`` per-molecule loss (``0`` when there is a single candidate). Its value for
        uninformative codes grows like ``log(n)``.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a {tuple(z_a.shape)} and z_b {tuple(z_b.shape)} must have the same shape")
    an = _normalised_codes(z_a)
    cand, offset = _candidates(z_b, negatives_b, self_index_offset)
    b = an.shape[0]
    logits = (an @ cand.T) / tau  # (B, n), in [-1/tau, 1/tau]
    rows = torch.arange(b, device=an.device)
    positive = logits[rows, rows + offset]
    return torch.logsumexp(logits, dim=1) - positive


# ---------------------------------------------------------------------------------------------
# Multi-process gathering
# ---------------------------------------------------------------------------------------------
class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 with (possibly) unequal per-rank sizes, differentiable.

    Backward: every rank holds the gradient of *its own* loss w.r.t. all gathered rows; the sum
    over ranks (all_reduce) of these gradients, restricted to the local rows, is the gradient of
    the sum of all ranks' losses w.r.t. the local input. (DDP then averages parameter gradients
    over ranks, which turns that sum into the mean over ranks.) ``all_reduce`` is used rather
    than reduce-scatter because every backend (gloo included) supports it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int, group) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        max_n = max(sizes)
        x = x.contiguous()
        if x.shape[0] < max_n:
            pad = x.new_zeros((max_n - x.shape[0], *x.shape[1:]))
            x_padded = torch.cat([x, pad], dim=0)
        else:
            x_padded = x
        buffers = [torch.empty_like(x_padded) for _ in sizes]
        dist.all_gather(buffers, x_padded, group=group)
        ctx.group = group
        ctx.offset = sum(sizes[:rank])
        ctx.n_local = sizes[rank]
        return torch.cat([buf[:n] for buf, n in zip(buffers, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        import torch.distributed as dist

        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.offset : ctx.offset + ctx.n_local], None, None, None


def gather_with_grad(x: Tensor, group=None) -> tuple[Tensor, int]:
    """All-gather ``x`` along its first dimension across processes, keeping gradients.

    Args:
        x: ``(B_r, ...)`` local tensor of rank ``r``; the per-rank batch sizes ``B_r`` may differ
            (they are exchanged first, then the rows are padded to the largest one for the
            collective and the padding dropped), the other dimensions must agree.
        group: process group (default: the world).

    Returns:
        ``(gathered, offset)``: ``gathered`` is ``(sum_r B_r, ...)``, the ranks' tensors
        concatenated in rank order; ``offset = sum_{r' < r} B_r'`` is the row of ``x[0]`` in it.
        Without an initialised ``torch.distributed`` or with world size 1: ``(x, 0)``.

    Gradients flowing into ``gathered`` are summed over ranks and routed back to the rank that owns
    each row, so with DDP's gradient averaging the parameter gradients equal those of one process
    computing the mean over ranks of the per-rank losses. The function is a collective: every rank
    must call it, in the same order.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return x, 0
    world_size = dist.get_world_size(group=group)
    if world_size <= 1:
        return x, 0
    rank = dist.get_rank(group=group)
    local_size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    all_sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(all_sizes, local_size, group=group)
    sizes = [int(s.item()) for s in all_sizes]
    gathered = _AllGatherWithGrad.apply(x, sizes, rank, group)
    return gathered, sum(sizes[:rank])

"""Tests of cmim_hf.training.losses against direct hand computations (float64)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cmim_hf.training.losses import (
    amim_latent_loss,
    cmim_contrastive_loss,
    gather_with_grad,
    gaussian_log_density,
    infonce_loss,
    sequence_cross_entropy,
)

DT = torch.float64
REPO_ROOT = Path(__file__).resolve().parents[1]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=DT).requires_grad_(requires_grad)


# ------------------------------------------------------------------------------------------------
# Hand computations (explicit loops and the formulas of the losses' docstrings written out)
# ------------------------------------------------------------------------------------------------
def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    u, v = u.reshape(-1).tolist(), v.reshape(-1).tolist()
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def _hand_cmim(z: torch.Tensor, cand: torch.Tensor, offset: int, tau: float) -> list[float]:
    """-log p(k=1|z_i,x_i), p = exp(s_ii/tau) / (exp(s_ii/tau) + 1/(n-1) sum_{j!=i} exp(s_ij/tau)), s_ii = 1."""
    n = cand.shape[0]
    out = []
    for i in range(z.shape[0]):
        if n == 1:
            out.append(0.0)
            continue
        neg = sum(math.exp(_cos(z[i], cand[j]) / tau) for j in range(n) if j != i + offset)
        p = math.exp(1.0 / tau) / (math.exp(1.0 / tau) + neg / (n - 1))
        out.append(-math.log(p))
    return out


def _hand_infonce(z_a: torch.Tensor, cand_b: torch.Tensor, offset: int, tau: float) -> list[float]:
    out = []
    for i in range(z_a.shape[0]):
        num = math.exp(_cos(z_a[i], cand_b[i + offset]) / tau)
        den = sum(math.exp(_cos(z_a[i], cand_b[j]) / tau) for j in range(cand_b.shape[0]))
        out.append(-math.log(num / den))
    return out


def _hand_log_normal(x: float, m: float, lv: float) -> float:
    var = math.exp(lv)
    return math.log(1.0 / math.sqrt(2 * math.pi * var) * math.exp(-((x - m) ** 2) / (2 * var)))


# ------------------------------------------------------------------------------------------------
# Reconstruction
# ------------------------------------------------------------------------------------------------
def test_sequence_cross_entropy_matches_hand_loop_with_padding():
    b, t, v = 3, 5, 7
    logits = _randn(b, t, v, seed=1)
    labels = torch.randint(0, v, (b, t), generator=_gen(2))
    labels[0, 3:] = -100  # padded tail
    labels[1, 0] = -100  # ignored first position
    labels[2, :] = -100  # no tokens at all
    got = sequence_cross_entropy(logits, labels)
    assert got.shape == (b,) and got.dtype == DT
    for i in range(b):
        terms = []
        for j in range(t):
            y = int(labels[i, j])
            if y == -100:
                continue
            row = logits[i, j].tolist()
            terms.append(-math.log(math.exp(row[y]) / sum(math.exp(r) for r in row)))
        expected = sum(terms) / len(terms) if terms else 0.0
        assert got[i].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert got[2].item() == 0.0


def test_sequence_cross_entropy_single_sequence_equals_torch_and_custom_ignore_index():
    logits = _randn(1, 6, 5, seed=3)
    labels = torch.tensor([[1, 4, 0, 2, 0, 0]])
    labels_pad = labels.clone()
    labels_pad[0, 4:] = 0
    # ignore_index=0 drops the positions labelled 0
    got = sequence_cross_entropy(logits, labels, ignore_index=0)
    ref = F.cross_entropy(logits[0], labels[0], ignore_index=0)
    torch.testing.assert_close(got[0], ref, rtol=1e-13, atol=1e-13)
    # no ignored token: plain torch mean CE
    labels_full = torch.tensor([[1, 4, 3, 2, 0, 1]])
    torch.testing.assert_close(
        sequence_cross_entropy(logits, labels_full)[0], F.cross_entropy(logits[0], labels_full[0])
    )


def test_sequence_cross_entropy_empty_sequence_no_nan_gradient():
    logits = _randn(2, 4, 3, seed=4, requires_grad=True)
    labels = torch.tensor([[0, 1, 2, -100], [-100, -100, -100, -100]])
    loss = sequence_cross_entropy(logits, labels)
    loss.mean().backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[1] == 0).all() and (logits.grad[0, 3] == 0).all()


def test_sequence_cross_entropy_extreme_logits_and_low_precision():
    logits = torch.tensor([[[1e4, -1e4, 0.0], [-1e4, 1e4, 3e4]]], dtype=DT, requires_grad=True)
    labels = torch.tensor([[1, 2]])
    loss = sequence_cross_entropy(logits, labels)
    assert torch.isfinite(loss).all()
    assert loss.item() == pytest.approx((2e4 + 0.0) / 2)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    bf = sequence_cross_entropy(logits.detach().bfloat16(), labels)
    assert bf.dtype == torch.float32 and torch.isfinite(bf).all()


def test_sequence_cross_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError):
        sequence_cross_entropy(_randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_sequence_cross_entropy_gradcheck():
    logits = _randn(2, 4, 3, seed=5, requires_grad=True)
    labels = torch.tensor([[0, 1, 2, -100], [2, -100, -100, -100]])
    assert torch.autograd.gradcheck(lambda lg: sequence_cross_entropy(lg, labels), (logits,))


# ------------------------------------------------------------------------------------------------
# A-MIM latent term
# ------------------------------------------------------------------------------------------------
def test_gaussian_log_density_matches_formula_and_torch_distributions():
    x, m, lv = _randn(3, 4, seed=6), _randn(3, 4, seed=7), _randn(3, 4, seed=8)
    got = gaussian_log_density(x, m, lv)
    assert got.shape == x.shape
    for idx in torch.cartesian_prod(torch.arange(3), torch.arange(4)).tolist():
        i, j = idx
        expected = _hand_log_normal(x[i, j].item(), m[i, j].item(), lv[i, j].item())
        assert got[i, j].item() == pytest.approx(expected, rel=1e-12)
    ref = torch.distributions.Normal(m, torch.exp(0.5 * lv)).log_prob(x)
    torch.testing.assert_close(got, ref)
    # scalars for the standard normal
    torch.testing.assert_close(
        gaussian_log_density(x, 0.0, 0.0), torch.distributions.Normal(0.0, 1.0).log_prob(x)
    )


@pytest.mark.parametrize("shape", [(3, 2, 4), (3, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_amim_latent_loss_matches_hand_loop(shape, reduction):
    z_mean = _randn(*shape, seed=9)
    z_logvar = _randn(*shape, seed=10).clamp(min=-6.0)
    z = z_mean + torch.exp(0.5 * z_logvar) * _randn(*shape, seed=11)
    got = amim_latent_loss(z, z_mean, z_logvar, reduction=reduction)
    assert got.shape == (shape[0],)
    for i in range(shape[0]):
        zs, ms, lvs = (
            z[i].reshape(-1).tolist(),
            z_mean[i].reshape(-1).tolist(),
            z_logvar[i].reshape(-1).tolist(),
        )
        per_dim = [
            -0.5 * (_hand_log_normal(a, m, lv) + _hand_log_normal(a, 0.0, 0.0))
            for a, m, lv in zip(zs, ms, lvs, strict=True)
        ]
        expected = sum(per_dim) / (len(per_dim) if reduction == "mean" else 1)
        assert got[i].item() == pytest.approx(expected, rel=1e-12)


def test_amim_latent_loss_sampled_variance_broadcast():
    """Dense-latent variant: one drawn log-variance per molecule, passed as (B, 1, 1)."""
    b, k, d = 4, 2, 3
    z_mean = _randn(b, k, d, seed=12)
    lv = torch.empty(b, 1, 1, dtype=DT).uniform_(-6.0, 0.0, generator=_gen(13))
    z = z_mean + torch.exp(0.5 * lv) * _randn(b, k, d, seed=14)
    torch.testing.assert_close(
        amim_latent_loss(z, z_mean, lv), amim_latent_loss(z, z_mean, lv.expand(b, k, d))
    )
    with pytest.raises(ValueError):
        amim_latent_loss(z, z_mean, lv, reduction="max")


def test_amim_latent_loss_gradcheck():
    z = _randn(2, 2, 3, seed=15, requires_grad=True)
    m = _randn(2, 2, 3, seed=16, requires_grad=True)
    lv = _randn(2, 2, 3, seed=17, requires_grad=True)
    for reduction in ("mean", "sum"):
        assert torch.autograd.gradcheck(lambda a, b, c, r=reduction: amim_latent_loss(a, b, c, r), (z, m, lv))
    assert torch.autograd.gradcheck(gaussian_log_density, (z, m, lv))


def test_amim_latent_loss_extreme_logvar_finite():
    z = torch.tensor([[1e3, -1e3, 0.0]], dtype=DT)
    lv = torch.tensor([[-6.0, 30.0, -6.0]], dtype=DT, requires_grad=True)
    loss = amim_latent_loss(z, torch.zeros_like(z), lv)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(lv.grad).all()


# ------------------------------------------------------------------------------------------------
# cMIM contrastive term
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("shape", [(5, 2, 3), (5, 4)])
def test_cmim_matches_fraction_of_method_md(tau, shape):
    z = _randn(*shape, seed=18)
    got = cmim_contrastive_loss(z, tau=tau)
    assert got.shape == (shape[0],)
    torch.testing.assert_close(got, torch.tensor(_hand_cmim(z, z, 0, tau), dtype=DT), rtol=1e-11, atol=1e-14)


def test_cmim_b1_zero_and_b2_closed_form():
    z1 = _randn(1, 2, 3, seed=19, requires_grad=True)
    out = cmim_contrastive_loss(z1)
    assert out.shape == (1,) and out.item() == 0.0
    out.sum().backward()  # still attached, zero gradient
    assert (z1.grad == 0).all()
    # B = 2: one negative, -log p = softplus((s_12 - 1)/tau) = log(1 + exp((s_12 - 1)/tau))
    z2 = _randn(2, 6, seed=20)
    s12 = _cos(z2[0], z2[1])
    expected = math.log(1.0 + math.exp((s12 - 1.0) / 0.1))
    torch.testing.assert_close(cmim_contrastive_loss(z2, tau=0.1), torch.full((2,), expected, dtype=DT))


def test_cmim_with_gathered_negatives_and_offset():
    z = _randn(3, 2, 4, seed=21)
    others = _randn(4, 2, 4, seed=22)
    gathered = torch.cat([others[:2], z, others[2:]])
    got = cmim_contrastive_loss(z, tau=0.2, negatives=gathered, self_index_offset=2)
    torch.testing.assert_close(
        got, torch.tensor(_hand_cmim(z, gathered, 2, 0.2), dtype=DT), rtol=1e-11, atol=0
    )
    # the gathered local rows equal the local batch: no gathering == negatives=z, offset 0
    torch.testing.assert_close(cmim_contrastive_loss(z, negatives=z), cmim_contrastive_loss(z))
    with pytest.raises(ValueError):
        cmim_contrastive_loss(z, negatives=gathered, self_index_offset=5)
    with pytest.raises(ValueError):
        cmim_contrastive_loss(z, negatives=gathered.reshape(7, 8))


def test_cmim_self_excluded_by_index_not_by_value():
    """A duplicate of z_i elsewhere in the batch is a negative with s_ij = 1."""
    base = _randn(3, 5, seed=23)
    z = torch.cat([base, base[:1]])  # rows 0 and 3 identical
    got = cmim_contrastive_loss(z, tau=0.1)
    torch.testing.assert_close(got, torch.tensor(_hand_cmim(z, z, 0, 0.1), dtype=DT), rtol=1e-11, atol=0)
    # row 0 sees exp(0) = 1 among its 3 negatives: loss >= softplus(log(1/3))
    assert got[0].item() >= math.log(1 + 1 / 3) - 1e-12
    # all codes identical: p = 1/2 exactly
    same = base[:1].expand(4, 5)
    torch.testing.assert_close(cmim_contrastive_loss(same), torch.full((4,), math.log(2.0), dtype=DT))


def test_cmim_is_scale_invariant_and_low_precision_upcast():
    z = _randn(4, 6, seed=24)
    torch.testing.assert_close(cmim_contrastive_loss(z * 123.0), cmim_contrastive_loss(z))
    bf = cmim_contrastive_loss(z.bfloat16())
    assert bf.dtype == torch.float32
    torch.testing.assert_close(bf.double(), cmim_contrastive_loss(z), rtol=0.05, atol=1e-3)


def test_cmim_gradcheck_plain_and_gathered():
    z = _randn(4, 2, 3, seed=25, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: cmim_contrastive_loss(a, tau=0.3), (z,))
    others = _randn(3, 2, 3, seed=26, requires_grad=True)

    def gathered_loss(a, o):
        return cmim_contrastive_loss(a, tau=0.3, negatives=torch.cat([o[:1], a, o[1:]]), self_index_offset=1)

    assert torch.autograd.gradcheck(gathered_loss, (z, others))


def test_cmim_extreme_temperatures_and_similarities_finite():
    z = torch.cat([_randn(3, 8, seed=27), -_randn(1, 8, seed=27), _randn(1, 8, seed=27) * 1e-8])
    z = torch.cat([z, torch.zeros(1, 8, dtype=DT)]).requires_grad_(True)  # also a zero code
    for tau in (1e-4, 1e-2, 1e3):
        loss = cmim_contrastive_loss(z, tau=tau)
        (g,) = torch.autograd.grad(loss.sum(), z)
        assert torch.isfinite(loss).all() and torch.isfinite(g).all(), tau
    with pytest.raises(ValueError):
        cmim_contrastive_loss(z, tau=0.0)


# ------------------------------------------------------------------------------------------------
# InfoNCE
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 2, 3), (5, 4)])
def test_infonce_matches_hand_loop(shape):
    z_a = _randn(*shape, seed=28)
    z_b = z_a + 0.3 * _randn(*shape, seed=29)
    got = infonce_loss(z_a, z_b, tau=0.2)
    assert got.shape == (shape[0],)
    torch.testing.assert_close(
        got, torch.tensor(_hand_infonce(z_a, z_b, 0, 0.2), dtype=DT), rtol=1e-11, atol=1e-14
    )


def test_infonce_edge_cases_and_gathered():
    z_a, z_b = _randn(1, 4, seed=30), _randn(1, 4, seed=31)
    assert infonce_loss(z_a, z_b).item() == 0.0
    z_a, z_b = _randn(2, 4, seed=32), _randn(2, 4, seed=33)
    s = [[_cos(z_a[i], z_b[j]) for j in range(2)] for i in range(2)]
    expected = [math.log(1 + math.exp((s[i][1 - i] - s[i][i]) / 0.1)) for i in range(2)]
    torch.testing.assert_close(infonce_loss(z_a, z_b, tau=0.1), torch.tensor(expected, dtype=DT))
    others = _randn(3, 4, seed=34)
    gathered = torch.cat([others[:1], z_b, others[1:]])
    got = infonce_loss(z_a, z_b, tau=0.1, negatives_b=gathered, self_index_offset=1)
    torch.testing.assert_close(got, torch.tensor(_hand_infonce(z_a, gathered, 1, 0.1), dtype=DT))
    with pytest.raises(ValueError):
        infonce_loss(z_a, z_b[:1])


def test_infonce_gradcheck_plain_and_gathered():
    z_a = _randn(3, 2, 2, seed=35, requires_grad=True)
    z_b = _randn(3, 2, 2, seed=36, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: infonce_loss(a, b, tau=0.3), (z_a, z_b))
    others = _randn(2, 2, 2, seed=37, requires_grad=True)

    def gathered_loss(a, b, o):
        return infonce_loss(a, b, tau=0.3, negatives_b=torch.cat([o, b]), self_index_offset=2)

    assert torch.autograd.gradcheck(gathered_loss, (z_a, z_b, others))


def test_infonce_extreme_temperature_finite():
    z_a = _randn(4, 8, seed=38, requires_grad=True)
    z_b = (-z_a.detach()).requires_grad_(True)  # positives maximally dissimilar
    for tau in (1e-4, 1e3):
        loss = infonce_loss(z_a, z_b, tau=tau)
        ga, gb = torch.autograd.grad(loss.sum(), (z_a, z_b))
        assert torch.isfinite(loss).all() and torch.isfinite(ga).all() and torch.isfinite(gb).all()


# ------------------------------------------------------------------------------------------------
# Batch-size behaviour (cMIM's 1/(B-1) average over the negatives)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dim", "tau"), [(128, 0.1), (8, 0.5)])
def test_cmim_scale_does_not_grow_with_batch_size_but_infonce_does(dim, tau):
    """i.i.d. random codes (an uninformative encoder): E[cMIM] is batch-size free, E[InfoNCE] ~ log B + c."""
    gen = _gen(39)
    cmim_means, infonce_means = {}, {}
    for b in (8, 64, 512):
        draws = max(2048 // b, 4)
        c, n = [], []
        for _ in range(draws):
            z = torch.randn(b, dim, generator=gen, dtype=DT)
            z_other = torch.randn(b, dim, generator=gen, dtype=DT)
            c.append(cmim_contrastive_loss(z, tau=tau).mean())
            n.append(infonce_loss(z, z_other, tau=tau).mean())
        cmim_means[b] = torch.stack(c).mean().item()
        infonce_means[b] = torch.stack(n).mean().item()
    values = list(cmim_means.values())
    assert max(values) / min(values) < 1.06, cmim_means  # within a 6% band from B=8 to B=512
    # InfoNCE grows by log(8) per factor 8 of the batch
    assert infonce_means[64] - infonce_means[8] == pytest.approx(math.log(8), abs=0.15), infonce_means
    assert infonce_means[512] - infonce_means[64] == pytest.approx(math.log(8), abs=0.15), infonce_means


# ------------------------------------------------------------------------------------------------
# Gathering across processes
# ------------------------------------------------------------------------------------------------
def test_gather_with_grad_without_distributed_is_identity():
    x = _randn(3, 2, seed=40, requires_grad=True)
    out, offset = gather_with_grad(x)
    assert out is x and offset == 0


def _single_process_reference(data: dict) -> dict[str, dict[str, torch.Tensor]]:
    ref = {}
    x, noise, tau, k = data["x"], data["noise"], data["tau"], data["k"]
    for kind in ("cmim", "infonce"):
        for reduce in ("ddp", "sum"):
            lin = torch.nn.Linear(data["w"].shape[1], data["w"].shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(data["w"])
                lin.bias.copy_(data["b"])
            b = x.shape[0]
            out = lin(torch.cat([x, x + noise]))
            z_a, z_b = out[:b].reshape(b, k, -1), out[b:].reshape(b, k, -1)
            per = cmim_contrastive_loss(z_a, tau=tau) if kind == "cmim" else infonce_loss(z_a, z_b, tau=tau)
            loss = per.mean() if reduce == "ddp" else per.sum()
            loss.backward()
            ref[f"{kind}_{reduce}"] = {
                "loss": loss.detach(),
                "weight_grad": lin.weight.grad.clone(),
                "bias_grad": lin.bias.grad.clone(),
            }
    return ref


def test_two_process_gathered_losses_equal_single_process(tmp_path):
    """gloo, 2 ranks: gathered per-rank losses + DDP gradient averaging == one process on the whole batch."""
    n, d_in, k, latent = 8, 5, 2, 3
    data = {
        "x": _randn(n, d_in, seed=41),
        "noise": 0.2 * _randn(n, d_in, seed=42),
        "w": _randn(k * latent, d_in, seed=43),
        "b": _randn(k * latent, seed=44),
        "tau": 0.2,
        "k": k,
        "unequal_sizes": [3, 5],
    }
    torch.save(data, tmp_path / "data.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    worker = Path(__file__).with_name("_dist_losses_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(rank), "2", str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    logs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=120)
            logs.append(out.decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(logs)

    ref = _single_process_reference(data)
    for rank in range(2):
        res = torch.load(tmp_path / f"result_{rank}.pt")
        assert set(res) == set(ref)
        for case, values in ref.items():
            for name, expected in values.items():
                torch.testing.assert_close(
                    res[case][name], expected, rtol=0, atol=1e-10, msg=f"rank {rank} {case} {name}"
                )

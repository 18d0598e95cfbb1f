"""Loss functions of the methods: pure functions of tensors, computed in fp32.

Each one is tested against a hand computation in ``tests/methods/test_losses.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE with one positive per query and a shared set of negatives.

    ``query`` and ``positive`` are [N, D], ``negatives`` [K, D], all L2-normalised.
    loss = -log exp(q.k+/T) / (exp(q.k+/T) + sum_k exp(q.k-/T))   (MoCo eq. 1)
    """
    query, positive, negatives = query.float(), positive.float(), negatives.float()
    pos = (query * positive).sum(dim=1, keepdim=True)
    neg = query @ negatives.T
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy over 2N views.

    Each of the 2N views has one positive (its pair) and 2N - 2 negatives.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative cosine similarity; the target is detached (stop-gradient)."""
    return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1).mean()


def byol_regression(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z'), averaged over the batch (target detached)."""
    return 2 + 2 * negative_cosine(prediction, target)


# --- part 2: SimSiam, MoCo v3, Barlow Twins, VICReg, SwAV, DINO -----------------------------


def symmetric_negative_cosine(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                              stop_gradient: bool = True) -> torch.Tensor:
    """SimSiam's loss D(p1, z2) / 2 + D(p2, z1) / 2 with D = -cos; ``z`` detached unless
    ``stop_gradient`` is false (the paper's collapse ablation, Fig. 2)."""
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    d12 = -F.cosine_similarity(p1.float(), z2.float(), dim=-1).mean()
    d21 = -F.cosine_similarity(p2.float(), z1.float(), dim=-1).mean()
    return (d12 + d21) / 2


def in_batch_info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's contrastive loss: query i's positive is key i, the other keys of the batch
    are its negatives; cross entropy over ``q k^T / T``, multiplied by ``2 T`` as in the
    paper's code (keeps the gradient scale independent of T). Inputs are L2-normalised
    here; ``key`` is detached (it comes from the momentum encoder)."""
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.detach().float(), dim=1)
    logits = q @ k.T / temperature
    labels = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, labels) * (2 * temperature)


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension standardisation over the batch (BatchNorm without affine, biased variance)."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Barlow Twins: C = z1n^T z2n / N of batch-standardised embeddings;
    loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2."""
    z1, z2 = _standardize(z1.float()), _standardize(z2.float())
    c = z1.T @ z2 / len(z1)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-4,
                 gamma: float = 1.0) -> dict[str, torch.Tensor]:
    """VICReg's three terms (unweighted):
    invariance = mean squared error between the views (mean over batch and dimensions);
    variance   = mean_j relu(gamma - sqrt(Var(z_j) + eps)), averaged over the two branches;
    covariance = sum_{i != j} Cov(z)_ij^2 / D, summed over the two branches
    (unbiased covariance, as in the paper's pseudo-code)."""
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    var = 0.0
    cov = 0.0
    for z in (z1, z2):
        zc = z - z.mean(0)
        std = torch.sqrt(zc.var(0) + eps)
        var = var + F.relu(gamma - std).mean() / 2
        c = zc.T @ zc / (n - 1)
        cov = cov + _off_diagonal(c).pow(2).sum() / d
    return {"invariance": inv, "variance": var, "covariance": cov}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """lambda * invariance + mu * variance + nu * covariance (VICReg eq. 6), and the three terms."""
    t = vicreg_terms(z1, z2)
    return sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"], t


def soft_cross_entropy(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """-sum_k q_k log softmax(logits / T)_k, averaged over the batch; ``targets`` detached."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(targets.detach().float() * logp).sum(dim=-1).mean()


def every_other_crop(targets: dict[int, torch.Tensor], logits: list[torch.Tensor],
                     temperature: float) -> torch.Tensor:
    """Multi-crop cross-view loss: the target of crop ``i`` is predicted by every other crop
    ``v != i`` (soft cross entropy on its logits); averaged over the (i, v) pairs."""
    total, terms = 0.0, 0
    for i, q in targets.items():
        for v, s in enumerate(logits):
            if v == i:
                continue
            total = total + soft_cross_entropy(q, s, temperature)
            terms += 1
    return total / terms


def swapped_prediction(scores: list[torch.Tensor], codes: dict[int, torch.Tensor],
                       temperature: float) -> torch.Tensor:
    """SwAV: for each crop ``i`` with codes q_i (the global crops), every other crop ``v``
    predicts them from its prototype scores; averaged over the (i, v != i) pairs."""
    return every_other_crop(codes, scores, temperature)


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO: teacher probabilities softmax((t - c) / T_t) of each global crop are the
    targets of the student's softmax(s / T_s) on every *other* crop; averaged over pairs."""
    targets = [F.softmax((t.float() - center) / teacher_temp, dim=-1).detach() for t in teacher]
    return every_other_crop(dict(enumerate(targets)), student, student_temp)


# --- first-generation contrastive methods (InstDisc, InvaSpread, PIRL, CMC, DIM, AMDIM, CPC) ---


def nce_loss(probs: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Noise-contrastive estimation over a memory bank (InstDisc eq. 5-6, PIRL eq. 3).

    ``probs`` is [N, 1 + K]: column 0 the positive, columns 1..K the K noise samples,
    each P(i|v) = exp(v_i.f / T) / Z. With uniform noise P_n = 1 / n and K samples,
    h(i, v) = P(i|v) / (P(i|v) + K P_n), and
    loss = -mean_rows[ log h(pos) + sum_noise log(1 - h(noise)) ].
    """
    probs = probs.float()
    noise = (probs.shape[1] - 1) / dataset_size  # K * P_n
    log_pos = torch.log(probs[:, 0]) - torch.log(probs[:, 0] + noise)
    log_neg = math.log(noise) - torch.log(probs[:, 1:] + noise)
    return -(log_pos + log_neg.sum(dim=1)).mean()


def softmax_embedding_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InvaSpread's instance loss (Ye et al. 2019, eq. 3-5) on the 2N embeddings of a batch.

    For each anchor a (every view of every instance) over the other 2N - 1 embeddings k:
    P(k|a) = exp(z_k.z_a / T) / sum_{k' != a} exp(z_k'.z_a / T); the anchor's pair p is
    recognised as its instance (-log P(p|a)) and every other embedding is not
    (-sum_{k != a, p} log(1 - P(k|a))); the mean over the 2N anchors. As in the authors'
    code (``x.t().data``), only the anchor side of each similarity carries the gradient.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.detach().T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_p = torch.log_softmax(sim.masked_fill(self_mask, float("-inf")), dim=1)
    pair = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    pos = log_p.gather(1, pair.view(-1, 1)).squeeze(1)
    neg_mask = ~self_mask
    neg_mask[torch.arange(2 * n, device=z.device), pair] = False
    # log(1 - P) computed stably from log P
    log_not = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))
    return -(pos + (log_not * neg_mask).sum(dim=1)).mean()


def jsd_mi_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Deep InfoMax's Jensen-Shannon MI estimator (Hjelm et al. 2019, eq. 4), negated.

    I_JSD = E_pos[-sp(-T)] - E_neg[sp(T)] with sp = softplus; written, as in the
    paper's code, with the log 2 offsets so that all-zero scores give 0:
    loss = mean(sp(T_neg) - log 2) - mean(log 2 - sp(-T_pos)).
    """
    log2 = math.log(2.0)
    e_pos = log2 - F.softplus(-pos_scores.float())
    e_neg = F.softplus(neg_scores.float()) - log2
    return e_neg.mean() - e_pos.mean()


def tanh_clip(scores: torch.Tensor, clip: float) -> torch.Tensor:
    """AMDIM's soft clipping of scores to (-clip, clip): clip * tanh(s / clip)."""
    return clip * torch.tanh(scores / clip) if clip > 0 else scores


def global_local_info_nce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE between global and local features (AMDIM eq. 2; DIM's NCE variant).

    ``scores`` is [N, N, P]: the score of image i's global feature against position p
    of image j's local map. Each positive (i, i, p) is contrasted with every position
    of every other image: loss = mean_{i,p} -log e^{s_iip} / (e^{s_iip} + sum_{j!=i,q} e^{s_ijq}).
    """
    scores = scores.float()
    n = scores.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    pos = scores[eye]  # [N, P]
    neg = torch.logsumexp(scores.masked_fill(eye.unsqueeze(-1), float("-inf")).flatten(1), dim=1)  # [N]
    # -log e^a / (e^a + e^b) = softplus(b - a): the negatives' sum is shared by an image's positives
    return F.softplus(neg.unsqueeze(1) - pos).mean()


def cpc_info_nce(predictions: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """CPC's InfoNCE (van den Oord et al. 2018, eq. 4): each prediction [M, D] scores every
    candidate patch embedding [C, D] (other patches of the same and other images are the
    negatives); ``targets`` [M] index the true patch. loss = mean CE(pred . cand / T, target)."""
    logits = predictions.float() @ candidates.float().T / temperature
    return F.cross_entropy(logits, targets)

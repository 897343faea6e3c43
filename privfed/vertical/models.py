"""The split model: one bottom LSTM/GRU per party with features (to an embedding in [-1, 1]) and the label party's
top MLP over the combined embeddings.

Every bottom model, the label party's own included, learns only from the gradient of the loss w.r.t. its embedding
(exact, or DP-noised under label DP); the top model trains on the combined embeddings (by DP-SGD on per-example
clipped gradients under label DP, computed with ``torch.func``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .data import PartyData

__all__ = ["BottomNet", "TopNet", "TorchBottom", "TopModel"]


class BottomNet(nn.Module):
    def __init__(self, channels: int, hidden: int, embedding: int, cell: str) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(channels, hidden, batch_first=True)
        self.out = nn.Linear(hidden, embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(x)
        return torch.tanh(self.out(seq[:, -1]))


class TopNet(nn.Module):
    def __init__(self, inputs: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.net = (nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs)) if hidden
                    else nn.Linear(inputs, outputs))  # hidden = 0: a linear top (fewer parameters to noise)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TorchBottom:
    """A party's bottom model over its own data; implements :class:`protocols.vertical.BottomModel`."""

    def __init__(self, data: PartyData, *, hidden: int, embedding: int, cell: str, lr: float, seed: int) -> None:
        torch.manual_seed(seed)
        self.data, self.embedding_dim = data, embedding
        self.net = BottomNet(len(data.columns), hidden, embedding, cell)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self._x: torch.Tensor | None = None
        self._out: torch.Tensor | None = None

    def align(self, ids: Sequence[str]) -> None:
        self._x = torch.from_numpy(self.data.values[self.data.rows_for(list(ids))])

    def embed(self, rows: np.ndarray, train: bool) -> np.ndarray:
        assert self._x is not None, "align() first"
        x = self._x[torch.from_numpy(np.asarray(rows, dtype=np.int64))]
        if train:
            self._out = self.net(x)
            return self._out.detach().numpy().astype(np.float32)
        with torch.no_grad():
            return self.net(x).numpy().astype(np.float32)

    def backward(self, gradient: np.ndarray) -> None:
        assert self._out is not None, "no training forward to apply a gradient to"
        self.optimizer.zero_grad()
        self._out.backward(torch.from_numpy(np.asarray(gradient, dtype=np.float32)))
        self.optimizer.step()
        self._out = None


def _loss(task: str, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    if task == "classification":
        return nn.functional.cross_entropy(out, y, reduction=reduction)
    return nn.functional.mse_loss(out.squeeze(-1), y, reduction=reduction)


class TopModel:
    """The label party's top model. ``step`` returns d loss / d input rows (exact or label-DP)."""

    def __init__(self, inputs: int, outputs: int, task: str, *, hidden: int, lr: float, seed: int,
                 private_lr: float | None = None) -> None:
        torch.manual_seed(seed + 7919)
        self.task = task
        self.net = TopNet(inputs, hidden, outputs)
        # under label DP the top model trains on noisy sums: plain SGD (a step scales with the signal) rather than
        # Adam (whose per-coordinate normalisation turns pure-noise coordinates into full-size steps)
        self.optimizer = (torch.optim.Adam(self.net.parameters(), lr=lr) if private_lr is None
                          else torch.optim.SGD(self.net.parameters(), lr=private_lr, momentum=0.5))
        self.n_params = sum(p.numel() for p in self.net.parameters())

    def _target(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64 if self.task == "classification" else np.float32))

    def step(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Exact training step: (loss, d mean-loss / d z)."""
        zt = torch.from_numpy(z).requires_grad_(True)
        loss = _loss(self.task, self.net(zt), self._target(y))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), zt.grad.numpy().astype(np.float32)

    def per_example(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """(loss, per-example joint vectors (batch, n_params + z dims)) of each example's own loss."""
        params = {k: v.detach() for k, v in self.net.named_parameters()}

        def one(p: dict[str, torch.Tensor], zi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return _loss(self.task, functional_call(self.net, p, (zi[None],)), yi[None])

        zt, yt = torch.from_numpy(z), self._target(y)
        gp, gz = vmap(grad(one, argnums=(0, 1)), in_dims=(None, 0, 0))(params, zt, yt)
        flat = torch.cat([gp[k].reshape(len(z), -1) for k, _ in self.net.named_parameters()] + [gz], dim=1)
        with torch.no_grad():
            loss = float(_loss(self.task, self.net(zt), yt))
        return loss, flat.numpy()

    def apply_noisy_sum(self, noisy_sum: np.ndarray, batch: int) -> None:
        """DP-SGD update from the noisy sum of clipped per-example parameter gradients."""
        self.optimizer.zero_grad()
        offset = 0
        for p in self.net.parameters():
            n = p.numel()
            p.grad = torch.from_numpy(noisy_sum[offset:offset + n] / batch).reshape(p.shape).to(p.dtype)
            offset += n
        self.optimizer.step()

    def predict(self, z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.net(torch.from_numpy(z))
        return out.argmax(-1).numpy() if self.task == "classification" else out.squeeze(-1).numpy()

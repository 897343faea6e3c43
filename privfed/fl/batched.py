"""Many clients' local training as one tensor program: the cross-device simulation path.

Every client of a FedAvg round starts from the same global model, and the models are small and identical in shape,
so K clients' training is one computation over *stacked* parameters ``[K, *shape]``: the embedding is a gather, the
LSTM/GRU recurrence is a batched matrix product per time step (``torch.bmm`` over the client axis), and the head is
one more ``bmm``. Clients stay independent — the loss summed over clients has, for each client's parameters, exactly
that client's gradient — and the optimiser (Adam or SGD, the formulas of ``torch.optim``) keeps per-client state and
step counts. Clients differ in data size: each step pads the clients' mini-batches to the largest one and masks the
padding out of the loss; a client with no batch left at a step is not updated and its optimiser state does not move.

Batch order is the sequential trainer's (:func:`privfed.fl.train.train_standard`): per client a
``torch.Generator`` seeded from ``options["seed"]`` draws one permutation per epoch, cut into ``batch_size`` slices,
at most ``max_batches`` per epoch. So the result equals the sequential loop's within float tolerance (summation
order differs; a test checks it). Nothing here is on a secret path: the seeds are the experiment's (data order only).

Not covered (the caller falls back to the sequential trainer; :func:`supports` says which): Opacus' ``DPLSTM``/
``DPGRU`` models (DP-SGD runs, whose per-sample clipping is per client anyway) and dropout between stacked layers
(its randomness is torch's global generator, which the sequential loop does not seed per client either).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from protocols.errors import ConfigError

from .config import TrainConfig
from .data import ClientDataset
from .models import ModelSpec, ParamLayout

__all__ = ["supports", "train_batched", "DEFAULT_CHUNK"]

#: clients trained together; bounds the memory of the saved activations (about K x B x T x 4H floats per layer)
DEFAULT_CHUNK = 256
_BETAS, _EPS = (0.9, 0.999), 1e-8


def supports(spec: ModelSpec) -> bool:
    """Whether the batched path reproduces the sequential trainer for models of this spec."""
    return not spec.dp_compatible and (spec.layers == 1 or spec.dropout == 0.0)


def _schedule(data: ClientDataset, local: TrainConfig, seed: int) -> list[torch.Tensor]:
    """The index tensors of the client's mini-batches, in the sequential trainer's order."""
    generator = torch.Generator().manual_seed(int(seed))
    steps = []
    n = len(data)
    for _ in range(local.epochs):
        order = torch.randperm(n, generator=generator)
        for batch, start in enumerate(range(0, n, local.batch_size)):
            if local.max_batches and batch >= local.max_batches:
                break
            steps.append(order[start:start + local.batch_size])
    return steps


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, shared: bool) -> torch.Tensor:
    """``x [K, M, In]`` times each client's ``weight [K, Out, In]`` (or one shared ``[Out, In]``) plus bias."""
    if shared:
        return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t()).reshape(*x.shape[:-1], -1)
    return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


def _forward(spec: ModelSpec, params: dict[str, torch.Tensor], inputs: torch.Tensor, shared: bool
             ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]],
                        torch.Tensor]:
    """Model outputs for ``inputs [K, B, T(, C)]`` with the parameters as constants (no autograd through them).

    Returns (embedded input, final hidden sequence ``[K, B, T, H]``, per layer (layer input, previous hidden states
    ``[K, B, T, H]``, pre-activation gates per time step), head output). The weight gradients are then assembled
    from the gradients at the gates and the head output (:func:`_gradients`), one matrix product per weight
    instead of one per time step, and as one large product when the clients share their weights (step 1).
    """
    k, b, t = inputs.shape[:3]
    if spec.task == "forecast":
        x = inputs.clone().requires_grad_(True)
    else:
        table = params["embed.weight"]
        x = (table[inputs] if shared else
             table.reshape(-1, table.shape[-1])[inputs + (torch.arange(k) * table.shape[1]).view(k, 1, 1)])
        x = x.requires_grad_(True)
    embedded, layers, hidden = x, [], x
    for layer in range(spec.layers):
        w_ih, w_hh = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
        b_ih, b_hh = params[f"rnn.bias_ih_l{layer}"], params[f"rnn.bias_hh_l{layer}"]
        projected = _linear(hidden.reshape(k, b * t, -1), w_ih, b_ih, shared).reshape(k, b, t, -1)
        h = hidden.new_zeros(k, b, spec.hidden)
        c = hidden.new_zeros(k, b, spec.hidden)
        previous, gates, outputs = [], [], []
        # unbind, not projected[:, :, step]: each select's backward would fill a full-size zero gradient (O(T^2))
        for current in projected.unbind(dim=2):
            previous.append(h)
            recurrent = _linear(h, w_hh, b_hh, shared)
            if spec.cell == "lstm":
                pre = current + recurrent
                gates.append(pre)
                i, f, g, o = pre.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:  # GRU: the input and recurrent parts are needed apart (r gates only the recurrent n part)
                gates.append(torch.stack([current, recurrent]))
                x_r, x_z, x_n = gates[-1][0].chunk(3, dim=-1)
                h_r, h_z, h_n = gates[-1][1].chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                h = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
            outputs.append(h)
        layers.append((hidden, torch.stack(previous, dim=2), gates))
        hidden = torch.stack(outputs, dim=2)
    last = hidden if spec.task == "next-token" else hidden[:, :, -1, :]
    flat = last.reshape(k, -1, spec.hidden)
    head = _linear(flat, params["head.weight"], params["head.bias"], shared)
    return embedded, hidden, layers, head


def _per_sample_loss(spec: ModelSpec, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each sample's loss ``[K, B]``, as :func:`privfed.fl.models.task_loss` averages it within one sample."""
    k, b = targets.shape[:2]
    if spec.task == "forecast":
        return ((head.reshape(k, b, -1) - targets) ** 2).mean(dim=2)
    losses = torch.nn.functional.cross_entropy(head.reshape(-1, head.shape[-1]), targets.reshape(-1),
                                               reduction="none")
    return losses.reshape(k, b, -1).mean(dim=2)


def _gradients(spec: ModelSpec, params: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
               mask: torch.Tensor, shared: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each client's gradient of its own mean batch loss (padding masked out), and the losses ``[K]``."""
    k, b, t = inputs.shape[:3]
    embedded, hidden, layers, head = _forward(spec, params, inputs, shared)
    counts = mask.sum(dim=1)
    losses = (_per_sample_loss(spec, head, targets) * mask).sum(dim=1) / counts.clamp(min=1)
    wrt = [embedded, head, *[g for _, _, gates in layers for g in gates]]
    grads = torch.autograd.grad(losses.sum(), wrt)
    d_embedded, d_head, d_gates = grads[0], grads[1], list(grads[2:])
    out: dict[str, torch.Tensor] = {}
    last = hidden if spec.task == "next-token" else hidden[:, :, -1, :]
    flat = last.reshape(k, -1, spec.hidden)
    out["head.weight"] = torch.bmm(d_head.transpose(1, 2), flat)
    out["head.bias"] = d_head.sum(dim=1)
    for layer, (layer_input, previous, _) in enumerate(layers):
        per_step, d_gates = d_gates[:t], d_gates[t:]
        d = torch.stack(per_step, dim=-2)  # [K, B, T, G] (GRU: [2, K, B, T, G])
        d_input, d_recurrent = (d, d) if spec.cell == "lstm" else (d[0], d[1])
        rows = layer_input.reshape(k, b * t, -1)
        out[f"rnn.weight_ih_l{layer}"] = torch.bmm(d_input.reshape(k, b * t, -1).transpose(1, 2), rows)
        out[f"rnn.weight_hh_l{layer}"] = torch.bmm(d_recurrent.reshape(k, b * t, -1).transpose(1, 2),
                                                   previous.reshape(k, b * t, -1))
        out[f"rnn.bias_ih_l{layer}"] = d_input.sum(dim=(1, 2))
        out[f"rnn.bias_hh_l{layer}"] = d_recurrent.sum(dim=(1, 2))
    if spec.task != "forecast":
        table = params["embed.weight"]
        vocab = table.shape[-2]
        index = (inputs + (torch.arange(k) * vocab).view(k, 1, 1)).reshape(-1)
        d_table = torch.zeros(k * vocab, table.shape[-1], dtype=d_embedded.dtype)
        d_table.index_add_(0, index, d_embedded.reshape(-1, table.shape[-1]))
        out["embed.weight"] = d_table.reshape(k, vocab, -1)
    return out, losses.detach()


def _gather(clients: Sequence[ClientDataset], batches: Sequence[torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clients' batches stacked and padded to the largest (inputs, targets) and the padding mask ``[K, B]``."""
    width = max(len(index) for index in batches)
    first = clients[0]
    inputs = first.inputs.new_zeros((len(clients), width, *first.inputs.shape[1:]))
    targets = first.targets.new_zeros((len(clients), width, *first.targets.shape[1:]))
    mask = torch.zeros(len(clients), width)
    for i, (data, index) in enumerate(zip(clients, batches)):
        inputs[i, :len(index)] = data.inputs[index]
        targets[i, :len(index)] = data.targets[index]
        mask[i, :len(index)] = 1.0
    return inputs, targets, mask


class _Optimiser:
    """``torch.optim.Adam``/``SGD`` (defaults otherwise) over stacked parameters, one state per client."""

    def __init__(self, params: dict[str, torch.Tensor], local: TrainConfig) -> None:
        self.local = local
        self.state = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params.items()}
        self.steps = torch.zeros(next(iter(params.values())).shape[0], dtype=torch.float64)

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        """One step for the ``active`` clients (bool ``[K]``); the others keep parameters and state."""
        local = self.local
        self.steps += active.to(torch.float64)
        everyone = bool(active.all())

        def keep_where(keep: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
            return new if everyone else torch.where(keep, new, old)

        with torch.no_grad():
            for name, p in params.items():
                shape = (-1, *([1] * (p.dim() - 1)))
                keep = active.view(shape)
                grad = grads[name]
                if local.weight_decay:
                    grad = grad + local.weight_decay * p
                first, second = self.state[name]
                if local.optimizer == "adam":
                    beta1, beta2 = _BETAS
                    new_first = torch.lerp(first, grad, 1 - beta1)
                    new_second = second * beta2 + (1 - beta2) * grad * grad
                    steps = self.steps.clamp(min=1)
                    correction1 = (1 - beta1 ** steps).to(p.dtype).view(shape)
                    correction2 = torch.sqrt(1 - beta2 ** steps).to(p.dtype).view(shape)
                    moved = p - (local.lr / correction1) * new_first / (new_second.sqrt() / correction2 + _EPS)
                    first.copy_(keep_where(keep, new_first, first))
                    second.copy_(keep_where(keep, new_second, second))
                elif local.momentum:
                    # a client's first step sets its buffer to the gradient (torch.optim.SGD, dampening 0)
                    fresh = (self.steps == 1).view(shape)
                    buffer = torch.where(fresh, grad, first * local.momentum + grad)
                    first.copy_(keep_where(keep, buffer, first))
                    moved = p - local.lr * buffer
                else:
                    moved = p - local.lr * grad
                p.copy_(keep_where(keep, moved, p))


def _train_chunk(spec: ModelSpec, layout: ParamLayout, start: torch.Tensor, clients: Sequence[ClientDataset],
                 local: TrainConfig, seeds: Sequence[int]) -> list[tuple[np.ndarray, int, dict[str, Any]]]:
    k = len(clients)
    params: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape in zip(layout.names, layout.shapes):
        size = int(np.prod(shape))
        params[name] = start[offset:offset + size].reshape(shape).expand(k, *shape).clone()
        offset += size
    schedules = [_schedule(data, local, seed) for data, seed in zip(clients, seeds)]
    optimiser = _Optimiser(params, local)
    loss_sums = torch.zeros(k, dtype=torch.float64)
    seen = torch.zeros(k, dtype=torch.float64)
    for step in range(max(len(s) for s in schedules)):
        active = [i for i, s in enumerate(schedules) if len(s) > step]
        inputs, targets, mask = _gather([clients[i] for i in active], [schedules[i][step] for i in active])
        if step == 0:  # every client still holds the global model: one shared set of weights, large products
            shared = {name: p[0] for name, p in params.items()}
            grads, losses = _gradients(spec, shared, inputs, targets, mask, shared=True)
        else:
            index = torch.tensor(active)
            subset = {name: p[index] for name, p in params.items()}
            part, part_losses = _gradients(spec, subset, inputs, targets, mask, shared=False)
            grads = {name: torch.zeros_like(p).index_copy_(0, index, part[name]) for name, p in params.items()}
            losses = torch.zeros(k).index_copy_(0, index, part_losses)
        counts = torch.zeros(k)
        counts[active] = mask.sum(dim=1)
        optimiser.step(params, grads, counts > 0)
        loss_sums += losses.to(torch.float64) * counts.to(torch.float64)
        seen += counts.to(torch.float64)
    final = torch.cat([params[name].reshape(k, -1) for name in layout.names], dim=1)
    updates = (final - start[None, :]).numpy().astype(np.float32)
    return [(updates[i].copy(), len(clients[i]),
             {"train_loss": float(loss_sums[i] / seen[i]) if seen[i] else math.nan, "steps": len(schedules[i])})
            for i in range(k)]


def train_batched(spec: ModelSpec, layout: ParamLayout, vector: np.ndarray, clients: Sequence[ClientDataset],
                  local: TrainConfig, seeds: Sequence[int], chunk: int = DEFAULT_CHUNK
                  ) -> list[tuple[np.ndarray, int, dict[str, Any]]]:
    """Train every client from the global ``vector``; one ``(update, n_samples, metrics)`` per client, as
    :func:`privfed.fl.train.train_standard` returns it, in the clients' order."""
    if not supports(spec):
        raise ConfigError("batched training covers torch LSTM/GRU models without inter-layer dropout; "
                          "use the sequential trainer")
    if len(clients) != len(seeds):
        raise ConfigError(f"{len(clients)} clients but {len(seeds)} seeds")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    for data in clients:
        if len(data) == 0:
            raise ConfigError(f"{data.name}: no training samples")
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape != (layout.size,):
        raise ConfigError(f"parameter vector has shape {vector.shape}, the model needs ({layout.size},)")
    start = torch.from_numpy(vector.copy())
    # clients of similar size train together (less padding); results return in the callers' order
    order = sorted(range(len(clients)), key=lambda i: len(clients[i]))
    results: list[Any] = [None] * len(clients)
    for first in range(0, len(order), chunk):
        part = order[first:first + chunk]
        trained = _train_chunk(spec, layout, start, [clients[i] for i in part], local, [seeds[i] for i in part])
        for i, result in zip(part, trained):
            results[i] = result
    return results

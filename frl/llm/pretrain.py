"""Pretraining: the next-token loss, and a training step built with ``frl.update``.

``next_token_loss(params, batch, *, model)``: ``-mean log p(x_{t+1} | x_{<=t})`` over the
positions whose target is real (``batch["mask"][:, 1:]``, or ``batch["loss_mask"]`` to train on
part of each sequence, e.g. only the answers). ``make_pretrain_update(model, optimizer)`` is
``frl.update.make_update`` over that loss: ``init(params)`` and a pure ``step(state, batch)``.
"""

from __future__ import annotations

from functools import partial

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.llm.model import Transformer
from frl.llm.rl import masked_mean, token_log_probs
from frl.optim import GradientTransformation
from frl.update import Update, make_update

__all__ = ["make_pretrain_update", "next_token_loss"]


def next_token_loss(
    params: TensorDictBase, batch: TensorDictBase, *, model: Transformer, key: Tensor | None = None
) -> tuple[Tensor, TensorDict]:
    """Cross-entropy of each next token; metrics ``loss``, ``perplexity`` (``exp loss``), ``accuracy``."""
    tokens = batch["tokens"]
    target_mask = batch["loss_mask"] if "loss_mask" in batch.keys() else batch["mask"][..., 1:]  # noqa: SIM118
    logits = model.apply(params, tokens[..., :-1], padding=~batch["mask"][..., :-1])
    log_prob = token_log_probs(logits, tokens[..., 1:])
    loss = -masked_mean(log_prob, target_mask)
    with torch.no_grad():
        accuracy = masked_mean((logits.argmax(-1) == tokens[..., 1:]).to(logits.dtype), target_mask)
        metrics = {"loss": loss.detach(), "perplexity": torch.exp(loss.detach()), "accuracy": accuracy}
    return loss, TensorDict(metrics, batch_size=[])


def make_pretrain_update(model: Transformer, optimizer: GradientTransformation) -> Update:
    """One pure optimisation step of :func:`next_token_loss` (``init(params)``, ``step(state, batch)``)."""
    return make_update(partial(next_token_loss, model=model), optimizer)

"""Pure networks: ``params = net.init(key)`` (a TensorDict) and ``net.apply(params, x)``.

Layers and heads are frozen dataclasses of static configuration; parameters live only in the
params TensorDict, so a network is a plain function that ``torch.func.grad``, ``vmap`` and
``torch.compile`` transform directly. Ensembles stack members' params on a leading dim;
recurrent cells carry one state tensor.
"""

from frl.nn import initializers
from frl.nn.cnn import ConvNetwork, ConvQNetwork, MinAtarCNN, NatureCNN, image_torso
from frl.nn.ensemble import Ensemble, PerAgent, ensemble_apply, ensemble_init, stack
from frl.nn.heads import (
    CandidateScorer,
    CategoricalPolicy,
    ContinuousQNetwork,
    GaussianPolicy,
    QNetwork,
    TanhGaussianPolicy,
    ValueNetwork,
)
from frl.nn.layers import ACTIVATIONS, Network, get_activation, linear, linear_init
from frl.nn.mixers import QMixer, vdn_mix
from frl.nn.mlp import MLP
from frl.nn.module import FunctionalModule, from_module
from frl.nn.recurrent import GRUCell, LSTMCell, RecurrentCell, RecurrentNetwork, unroll

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "CandidateScorer",
    "CategoricalPolicy",
    "ContinuousQNetwork",
    "ConvNetwork",
    "ConvQNetwork",
    "Ensemble",
    "FunctionalModule",
    "GRUCell",
    "GaussianPolicy",
    "LSTMCell",
    "MinAtarCNN",
    "NatureCNN",
    "Network",
    "PerAgent",
    "QMixer",
    "QNetwork",
    "RecurrentCell",
    "RecurrentNetwork",
    "TanhGaussianPolicy",
    "ValueNetwork",
    "ensemble_apply",
    "ensemble_init",
    "from_module",
    "get_activation",
    "image_torso",
    "initializers",
    "linear",
    "linear_init",
    "stack",
    "unroll",
    "vdn_mix",
]

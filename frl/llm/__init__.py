"""A transformer language model from scratch, and reinforcement-learning fine-tuning for it.

``frl.llm.tokenizer`` (characters, byte-level BPE), ``frl.llm.model`` (a decoder-only
transformer as pure functions over a params TensorDict, with a KV cache) and
``frl.llm.generate`` (batched sampling from keys: temperature, top-k, top-p, greedy) and
``frl.llm.rl`` (token-level PPO with a KL penalty, GRPO, RLOO), ``frl.llm.pretrain`` (the
next-token loss), ``frl.llm.tasks`` (addition with a verifiable reward, Python's help text,
pretraining on prompt/completion pairs), ``frl.llm.dialogue`` (a dialogue grammar and the
sentiment experiment that shows reward hacking), ``frl.llm.rewards`` (sentiment, format, length,
composites; hacking diagnostics), ``frl.llm.finetune`` (sampling, scoring, GRPO/RLOO/PPO
iterations, ``rl_finetune``) and ``frl.llm.cli`` (``frl llm pretrain|finetune|sample``).
"""

from frl.llm import rl
from frl.llm.generate import filter_logits, generate
from frl.llm.model import Transformer, TransformerConfig
from frl.llm.tokenizer import BOS, EOS, PAD, BPETokenizer, CharTokenizer, load

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "BPETokenizer",
    "CharTokenizer",
    "Transformer",
    "TransformerConfig",
    "filter_logits",
    "generate",
    "load",
    "rl",
]

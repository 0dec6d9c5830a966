"""Tokenizers trained on a corpus: characters, or byte-pair encoding over UTF-8 bytes.

Both round-trip text exactly (``decode(encode(text)) == text``) and reserve ids for special
tokens: ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2).

* :class:`CharTokenizer`: one id per character seen in the training corpus (plus ``<unk>`` for
  the others, which therefore do not round-trip: train on the alphabet you need).
* :class:`BPETokenizer`: Sennrich et al. 2016 on bytes (as GPT-2): the 256 byte values are the
  base vocabulary, so any text round-trips; ``train`` merges the most frequent adjacent pair,
  ``num_merges`` times (ties broken by the smaller pair, so training is deterministic).

``save(path)`` writes JSON; ``load(path)`` reads either kind back.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SPECIALS", "BPETokenizer", "CharTokenizer", "load"]

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


@dataclass
class CharTokenizer:
    """Characters to ids (see the module docstring)."""

    chars: tuple[str, ...] = ()

    @classmethod
    def train(cls, corpus: str | Iterable[str]) -> CharTokenizer:
        text = corpus if isinstance(corpus, str) else "".join(corpus)
        return cls(tuple(sorted(set(text))))

    def __post_init__(self) -> None:
        self._ids = {c: i + len(SPECIALS) + 1 for i, c in enumerate(self.chars)}

    @property
    def unk(self) -> int:
        return len(SPECIALS)

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + 1 + len(self.chars)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self._ids.get(c, self.unk) for c in text]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        base = len(SPECIALS) + 1
        return "".join(self.chars[i - base] for i in ids if i >= base)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "char", "chars": list(self.chars)}))


@dataclass
class BPETokenizer:
    """Byte-level BPE (see the module docstring). ``merges[k] = (a, b)`` makes id ``259 + k``."""

    merges: list[tuple[int, int]] = field(default_factory=list)

    OFFSET = len(SPECIALS)  # bytes are ids 3..258

    @classmethod
    def train(cls, corpus: str | Iterable[str], num_merges: int) -> BPETokenizer:
        """Learn ``num_merges`` merges from ``corpus`` (a text, or texts merged within each only)."""
        if num_merges < 0:
            raise ValueError(f"BPETokenizer.train: `num_merges` must be >= 0, got {num_merges}")
        texts = [corpus] if isinstance(corpus, str) else list(corpus)
        # words (split on spaces, the space kept with the next word) counted once each
        words: Counter[tuple[int, ...]] = Counter()
        for text in texts:
            for i, piece in enumerate(text.split(" ")):
                chunk = (" " if i else "") + piece
                if chunk:
                    words[tuple(b + cls.OFFSET for b in chunk.encode("utf-8"))] += 1
        merges: list[tuple[int, int]] = []
        vocab = dict(words)
        for k in range(num_merges):
            pairs: Counter[tuple[int, int]] = Counter()
            for word, n in vocab.items():
                for pair in itertools.pairwise(word):
                    pairs[pair] += n
            if not pairs:
                break
            best = min(pairs, key=lambda p: (-pairs[p], p))
            new_id = cls.OFFSET + 256 + k
            merges.append(best)
            vocab = {_merge(word, best, new_id): n for word, n in vocab.items()}
        return cls(merges)

    def __post_init__(self) -> None:
        self.merges = [tuple(m) for m in self.merges]
        self._rank = {pair: k for k, pair in enumerate(self.merges)}
        self._bytes: dict[int, bytes] = {self.OFFSET + b: bytes([b]) for b in range(256)}
        for k, (a, b) in enumerate(self.merges):
            self._bytes[self.OFFSET + 256 + k] = self._bytes[a] + self._bytes[b]

    @property
    def vocab_size(self) -> int:
        return self.OFFSET + 256 + len(self.merges)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = [b + self.OFFSET for b in chunk.encode("utf-8")]
        while len(ids) > 1:
            rank = min(self._rank.get(pair, len(self._rank)) for pair in itertools.pairwise(ids))
            if rank == len(self._rank):
                break
            ids = list(_merge(tuple(ids), self.merges[rank], self.OFFSET + 256 + rank))
        return ids

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(" ")):
            chunk = (" " if i else "") + piece
            if chunk:
                ids.extend(self._encode_chunk(chunk))
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._bytes[i] for i in ids if i >= self.OFFSET).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "bpe", "merges": [list(m) for m in self.merges]}))


def _merge(word: tuple[int, ...], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def load(path: str | Path) -> CharTokenizer | BPETokenizer:
    """A tokenizer saved by ``save``."""
    data = json.loads(Path(path).read_text())
    if data.get("kind") == "char":
        return CharTokenizer(tuple(data["chars"]))
    if data.get("kind") == "bpe":
        return BPETokenizer([tuple(m) for m in data["merges"]])
    raise ValueError(f"load: {path} is not a frl tokenizer file (kind {data.get('kind')!r})")

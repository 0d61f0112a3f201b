"""The networks of the attention stories (:mod:`pyro_lvm.models.attention`): one architecture for all.

A character embedding and a bidirectional LSTM encode the source (lemma characters and feature
tags); a decoder LSTM reads the output so far (no input feeding: the decoder never sees the
attention, so given its states the alignments ``a_t`` are independent); a bilinear score
``h_t . W enc_j`` gives the attention logits; an output layer ``V tanh(A h_t + B c)`` gives the
next character's logits from a decoder state and a source encoding ``c`` (one source position
for hard attention, the attention-weighted mean for soft attention).

Shapes: N words, S source positions, T output steps, V target symbols, H hidden units.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["MASKED", "BiEncoder", "InflectionNets"]

#: logit of a padded source position (``exp(MASKED) == 0`` in float32; finite, so no NaN gradients).
MASKED = -1e9


class BiEncoder(nn.Module):
    """Embedding + bidirectional LSTM over padded symbol sequences.

    :param vocab_size: symbols. :param embed: embedding size. :param hidden: units per direction.
    :param padding_idx: a symbol whose embedding stays zero (None: none).
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, padding_idx: int | None = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=padding_idx)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)

    def forward(self, symbols: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encodings (N, L, 2H) of ``symbols`` (N, L) with ``lengths`` (N,) (zeros past each length)."""
        packed = pack_padded_sequence(self.embed(symbols), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=symbols.size(1))[0]


class InflectionNets(nn.Module):
    """Encoder, decoder, attention scores and output layer shared by every attention story.

    :param source_size: source symbols (index 0 is padding). :param target_size: target symbols
        V (index 0 is ``<eos>``); the decoder's first input is an extra symbol ``V`` (``<bos>``).
    :param embed: embedding size. :param hidden: LSTM units (the encoder has ``hidden`` per direction).
    """

    def __init__(self, source_size: int, target_size: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.target_size = target_size
        self.encoder = BiEncoder(source_size, embed, hidden)
        self.target_embed = nn.Embedding(target_size + 1, embed)
        self.decoder = nn.LSTM(embed, hidden, batch_first=True)
        self.score = nn.Linear(2 * hidden, hidden, bias=False)
        self.from_state = nn.Linear(hidden, hidden)
        self.from_source = nn.Linear(2 * hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, target_size)

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``enc`` (N, S, 2H) and the mask of real source positions (N, S), bool."""
        mask = torch.arange(src.size(1), device=src.device) < src_len.unsqueeze(-1)
        return self.encoder(src, src_len), mask

    def decode(self, previous: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """Decoder states ``h`` (N, T, H) after reading ``previous`` (N, T) outputs (``V`` = ``<bos>``), and the LSTM state."""
        return self.decoder(self.target_embed(previous), state)

    def teacher_forced(self, tgt: torch.Tensor) -> torch.Tensor:
        """Decoder states (N, T, H) for the outputs ``tgt`` (N, T): step ``t`` has read ``<bos>, y_0 .. y_{t-1}``."""
        bos = torch.full_like(tgt[:, :1], self.target_size)
        return self.decode(torch.cat([bos, tgt[:, :-1]], 1))[0]

    def attention_logits(self, h: torch.Tensor, enc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores ``h_t . W enc_j`` (N, T, S) for states ``h`` (N, T, H); :data:`MASKED` at padded positions."""
        scores = torch.einsum("nth,nsh->nts", h, self.score(enc))
        return scores.masked_fill(~mask.unsqueeze(1), MASKED)

    def emissions(self, h: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """``log p(y_t | a_t = j, h_t)`` (N, T, S, V): the output layer on each state and each source position."""
        hidden = torch.tanh(self.from_state(h).unsqueeze(2) + self.from_source(enc).unsqueeze(1))
        return self.output(hidden).log_softmax(-1)

    def soft_output(self, h: torch.Tensor, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``log p(y_t | E[a_t], h_t)`` (N, T, V): the output layer on the attention-weighted encoding (weights (N, T, S))."""
        context = torch.einsum("nts,nsh->nth", weights, enc)
        return self.output(torch.tanh(self.from_state(h) + self.from_source(context))).log_softmax(-1)

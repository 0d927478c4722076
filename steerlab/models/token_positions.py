"""Which token of its text each position of the current forward pass is.

Steering "from token k on" or "only generated tokens" needs, inside a hook, the
position of each column among its row's real tokens, also during cached generation
where a forward sees only the newest token. The adapter feeds a
:class:`TokenPositions` from a pre-hook on the model's root module.
"""

from __future__ import annotations

import torch


class TokenPositions:
    """Per-forward positions, updated by the adapter before every forward pass.

    Attributes (for the current forward, ``[batch, pos]`` like the activations):
        position: index of the token among its row's real tokens (-1 on padding).
        real: True on real tokens.
        prompt_length: ``[batch]`` real tokens in the prompt (set by a forward with no cache).
    """

    def __init__(self) -> None:
        self.position: torch.Tensor | None = None
        self.real: torch.Tensor | None = None
        self.prompt_length: torch.Tensor | None = None
        self._next_start = 0

    def update(self, batch: int, length: int, device: torch.device, attention_mask: torch.Tensor | None,
               past_length: int | None) -> None:
        """Record a forward over ``length`` new tokens.

        ``attention_mask`` may span past + new tokens (as in cached generation);
        ``past_length`` None means unknown: a multi-token forward then starts a new
        sequence and a single-token one continues the previous.
        """
        if past_length is None:
            past_length = 0 if length > 1 else self._next_start
        if attention_mask is not None:
            mask = attention_mask.to(device).bool()
            counted = mask.long().cumsum(dim=-1) - 1
            self.real = mask[:, -length:]
            self.position = torch.where(self.real, counted[:, -length:], -1)
        else:
            self.real = torch.ones(batch, length, dtype=torch.bool, device=device)
            self.position = (past_length + torch.arange(length, device=device)).expand(batch, length)
        if past_length == 0:
            self.prompt_length = self.real.sum(dim=-1)
        self._next_start = past_length + length

    def last(self) -> torch.Tensor:
        """``[batch, pos]`` True at each row's last real token of this forward."""
        columns = torch.arange(self.real.shape[1], device=self.real.device)
        last_column = torch.where(self.real, columns, -1).max(dim=-1).values
        return columns.unsqueeze(0) == last_column.unsqueeze(1)

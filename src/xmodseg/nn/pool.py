"""History of generated images (Shrivastava et al. 2017), as CycleGAN and SIFA use it.

Discriminators see a mix of the newest fakes and older ones, which damps oscillation. The pool
draws from its own generator and is checkpointed, so a resumed run sees the same history.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0, whole_batches: bool = False) -> None:
        self.size = size
        self.whole_batches = whole_batches  # SIFA stores and swaps whole batches; CycleGAN single images
        self.images: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Per item (an image, or the whole batch with `whole_batches`): while filling, store and
        return it; then with p=0.5 return a stored item and store the new one in its place, else
        return the new item."""
        if self.size == 0:
            return batch
        out = []
        items = [batch.detach()] if self.whole_batches else [img.unsqueeze(0) for img in batch.detach()]
        for img in items:
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand(1, generator=self.gen)) < 0.5:
                j = int(torch.randint(len(self.images), (1,), generator=self.gen))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [i.cpu() for i in self.images], "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        self.images = [i.to(device) for i in state["images"]]
        self.gen.set_state(state["gen"])

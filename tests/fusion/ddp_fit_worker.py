"""One rank of a 2-process gloo run of :func:`fusion.engine.fit` (launched by test_ddp.py via torchrun).

The model has one buffer that each rank overwrites during training with a value of its own
(rank 0 counts its steps up, rank 1 down), as batch-norm running statistics with momentum 1
would hold each rank's own last batch. Evaluated on its own buffer, rank 0's validation loss
falls every epoch and rank 1's rises, so with patience 1 rank 1 would stop after two epochs
while rank 0 went on (and waited for rank 1 forever). Writes ``rank<r>.json`` to ``argv[1]``.
"""
import json
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fusion.engine import FitOptions, ImageData, TrainingSetup, fit  # noqa: E402


class RankLocalBufferNet(nn.Module):
    """Logits ``linear(mean pixel)``, plus ``shift`` on class 0; ``shift`` is set per rank in training."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 2)
        self.register_buffer("shift", torch.zeros(()))
        self.steps = 0
        self.num_classes = 2

    def forward(self, x):
        if self.training:
            self.steps += 1
            self.shift.fill_(self.steps if dist.get_rank() == 0 else -self.steps)
        logits = self.linear(x.flatten(1).mean(1, keepdim=True))
        return logits + torch.stack([self.shift, torch.zeros_like(self.shift)])


def main(out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    torch.manual_seed(0)
    model = RankLocalBufferNet()
    net = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    setup = TrainingSetup(net, opt, None, torch.Generator().manual_seed(1), lambda x: x.float() / 255,
                          lambda x: x.float() / 255, torch.device("cpu"))
    images = torch.randint(0, 255, (24, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    labels = np.zeros(24, dtype=np.int64)  # class 0: a larger shift means a lower loss
    labels[:16:2] = 1
    data = ImageData(images, labels, train_idx=np.arange(16), val_idx=np.arange(16, 24))
    result = fit(setup, data, FitOptions(epochs=4, patience=1, batch_size=4, channels_last=False))
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(
        {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
         "val_loss": [h["val_loss"] for h in result.history], "shift": float(model.shift)}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Training hooks."""
from detectron2.engine import HookBase
from tqdm import tqdm

__all__ = ["ProgressBar"]


class ProgressBar(HookBase):
    """A tqdm progress bar over the iterations, with ETA and the latest total loss."""

    def __init__(self, description: str = "train"):
        self._description = description
        self._bar = None

    def before_train(self):
        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc=self._description,
            unit="it",
            dynamic_ncols=True,
        )

    def after_step(self):
        history = self.trainer.storage.histories().get("total_loss")
        if history is not None:
            self._bar.set_postfix(loss=f"{history.latest():.3f}", refresh=False)
        self._bar.update(1)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()

"""Training hooks."""

from detectron2.engine import HookBase
from tqdm import tqdm

__all__ = ["ProgressBar"]


class ProgressBar(HookBase):
    """A tqdm progress bar over the iterations, with ETA and the latest total loss."""

    def __init__(self, description: str = "train", position: int = 0):
        """
        Args:
            description (str): label in front of the bar.
            position (int): terminal line of the bar, for several bars at once (0 = first).
        """
        self._description = description
        self._position = position
        self._bar = None

    def before_train(self):
        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc=self._description,
            unit="it",
            position=self._position,
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

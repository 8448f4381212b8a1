"""A checkpointer that never leaves a truncated checkpoint under its final name."""

import os

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer"]


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` writes ``<name>.partial.pth`` first and renames
    it to ``<name>.pth`` once complete: a full disk or a killed process leaves at most a partial
    file, never a truncated ``model_*.pth`` that ``--resume`` would pick up. A ``save_dir`` that
    is not a local folder (a remote URI) is written as Detectron2 writes it."""

    def save(self, name: str, **kwargs) -> None:
        """Save ``<name>.pth`` atomically and tag it as the last checkpoint.

        Args:
            name (str): the file name without ``.pth``.
            kwargs: extra data saved with the model, as in ``Checkpointer.save``.
        """
        if not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            super().save(name, **kwargs)
            return
        partial = f"{name}.partial"
        super().save(partial, **kwargs)
        # os.replace overwrites an earlier <name>.pth in one step (iopath's mv refuses to).
        os.replace(
            os.path.join(self.save_dir, f"{partial}.pth"),
            os.path.join(self.save_dir, f"{name}.pth"),
        )
        self.tag_last_checkpoint(f"{name}.pth")

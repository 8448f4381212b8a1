"""A checkpointer that never leaves a truncated checkpoint under its final name, and says in
one line when it loads pretrained backbone weights."""

import os

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer"]

#: Where Detectron2's FPN backbones keep the ResNet that pretrained weights initialise.
BACKBONE_PREFIX = "backbone.bottom_up."


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` writes ``<name>.partial.pth`` first and renames
    it to ``<name>.pth`` once complete: a full disk or a killed process leaves at most a partial
    file, never a truncated ``model_*.pth`` that ``--resume`` would pick up. A ``save_dir`` that
    is not a local folder (a remote URI) is written as Detectron2 writes it.

    Loading weights that hold exactly the backbone's ResNet (``MODEL.WEIGHTS`` of pretrained
    weights, e.g. ``vos_det://pretrained/<name>``) logs one INFO line instead of Detectron2's
    warning that lists every parameter of the FPN, RPN and heads as missing: they are meant to
    start from their initialisation. Any other mismatch is warned about as Detectron2 does.
    """

    def _log_incompatible_keys(self, incompatible) -> None:
        missing = list(incompatible.missing_keys)
        backbone_only = (
            missing
            and not incompatible.incorrect_shapes
            and not incompatible.unexpected_keys
            and not any(key.startswith(BACKBONE_PREFIX) for key in missing)
            and any(key.startswith(BACKBONE_PREFIX) for key in self.model.state_dict())
        )
        if not backbone_only:
            super()._log_incompatible_keys(incompatible)
            return
        self.logger.info(
            "The weights hold the backbone's ResNet only (%s*): the model's %d other parameters "
            "and buffers (FPN, RPN, ROI heads, VOS state) start from their initialisation.",
            BACKBONE_PREFIX,
            len(missing),
        )

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

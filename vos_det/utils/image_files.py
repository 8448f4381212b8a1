"""Image files for inference: collecting inputs, reading them completely, and an output folder
that never overwrites an input (``tools/demo.py``)."""

import glob
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.ood_datasets import IMAGE_EXTENSIONS

__all__ = ["SkippedImage", "check_outputs", "collect_inputs", "output_path", "read_image"]


class SkippedImage(Exception):
    """An image inference cannot process; the message says why."""


def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Expand image paths, folders and glob patterns into image paths, in order, without repeats.

    Args:
        inputs (Sequence[str]): the ``--input`` values.

    Returns:
        list[str]: the image paths; folders contribute their files with an image extension,
        sorted; patterns every file they match, sorted.

    Raises:
        FileNotFoundError: an input matches no image (the message names it).
        ValueError: two images share a file name, so their outputs would collide.
    """
    paths: List[str] = []
    by_name: Dict[str, str] = {}
    for pattern in inputs:
        if os.path.isdir(pattern):
            matched = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(pattern, name))
            )
        elif os.path.isfile(pattern):
            matched = [pattern]
        else:
            matched = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
        if not matched:
            raise FileNotFoundError(
                f"--input {pattern!r} matched no image (expected an image file, a folder "
                f"holding {'/'.join(IMAGE_EXTENSIONS)} files, or a glob pattern)"
            )
        for path in matched:
            name = os.path.basename(path)
            if name not in by_name:
                by_name[name] = path
                paths.append(path)
            elif os.path.abspath(by_name[name]) != os.path.abspath(path):
                raise ValueError(
                    f"{by_name[name]} and {path} share the file name {name!r}: their annotated "
                    "images would overwrite each other in --output; run them separately"
                )
    return paths


def output_path(output: str, image_path: str) -> str:
    """Returns: where the annotated picture of ``image_path`` goes in the ``output`` folder."""
    return os.path.join(output, os.path.basename(image_path))


def check_outputs(paths: Sequence[str], output: str, extra_files: Sequence[str] = ()) -> None:
    """Refuse an ``--output`` folder where the demo would overwrite one of its inputs.

    Files are compared by identity (device and inode), so different spellings of a folder,
    symbolic and hard links are caught.

    Args:
        paths (Sequence[str]): the input images.
        output (str): the ``--output`` folder.
        extra_files (Sequence[str]): other files written into it (e.g. ``detections.json``).

    Raises:
        ValueError: an annotated picture or an extra file would replace an input (the message
            names both).
    """
    inputs = {_file_identity(path): path for path in paths}
    targets = [output_path(output, path) for path in paths]
    for target in targets + [os.path.join(output, name) for name in extra_files]:
        if os.path.exists(target) and _file_identity(target) in inputs:
            raise ValueError(
                f"--output {output}: writing {target} would overwrite the input "
                f"{inputs[_file_identity(target)]}; choose an --output folder that holds none "
                "of the input images"
            )


def _file_identity(path: str) -> Tuple[int, int]:
    """Returns: the (device, inode) of the file ``path`` names, through symbolic links."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def read_image(path: str) -> np.ndarray:
    """Read an image completely.

    Args:
        path (str): image file.

    Returns:
        ndarray: (H, W, 3) uint8 BGR image.

    Raises:
        SkippedImage: the file is no image OpenCV reads, or its data is damaged (a truncated
            JPEG, which OpenCV decodes partly, filling the rest with grey).
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SkippedImage("cannot read the image (corrupt or not an image)")
    try:
        with Image.open(path) as complete:
            complete.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        pass  # a format or a size PIL refuses: OpenCV's reading above is all there is
    except OSError as error:
        raise SkippedImage(f"the image file is damaged ({error})") from error
    return image

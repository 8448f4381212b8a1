"""Out-of-distribution (OOD) image sets: loading, registration and the shared file helpers.

An OOD set is a list of images in which no object of the ID (training) classes appears. The
detector still predicts ID classes on them, so its dataset dicts carry no annotations and its
metadata lists the ID classes as ``thing_classes``.
"""

import contextlib
import json
import logging
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from PIL import Image

from ..core.files import default_datasets_root, write_json

__all__ = [
    "ID_CLASSES",
    "IMAGE_EXTENSIONS",
    "default_datasets_root",
    "explain_json_errors",
    "list_image_files",
    "load_json",
    "load_ood_image_list",
    "load_ood_image_folder",
    "read_image_size",
    "register_ood_dataset",
    "require_path",
    "resolve_id_classes",
    "write_json",
]

logger = logging.getLogger(__name__)

# fmt: off
ID_CLASSES: Dict[str, List[str]] = {
    "voc": list(VOC_CLASS_NAMES),
    "bdd": [
        "pedestrian", "rider", "car", "truck", "bus",
        "train", "motorcycle", "bicycle", "traffic light", "traffic sign",
    ],
}
# fmt: on

# Image files recognised in folders (compared lower-case); PIL reads the size of all of them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION_TAG = 274
# EXIF orientations under which Detectron2's image reader transposes the image.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

_DEFAULT_MISSING_HINT = "Check the path given to register_ood_dataset()."


def read_image_size(path: str) -> Tuple[int, int]:
    """Read an image's size from its file header, without decoding the pixels.

    The size is the one Detectron2's image reader returns, i.e. after applying the EXIF
    orientation (which swaps height and width for rotated photos).

    Args:
        path (str): image file.

    Returns:
        tuple[int, int]: (height, width) in pixels.
    """
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return width, height
    return height, width


def list_image_files(folder: str) -> List[str]:
    """List the image files under a folder, recursively.

    Args:
        folder (str): folder to scan.

    Returns:
        list[str]: paths relative to ``folder`` (with "/" separators) of every file whose
            extension is in ``IMAGE_EXTENSIONS`` (case-insensitive), sorted.
    """
    found = []
    for directory, _, files in os.walk(folder):
        for file_name in files:
            if file_name.lower().endswith(IMAGE_EXTENSIONS):
                relative = os.path.relpath(os.path.join(directory, file_name), folder)
                found.append(relative.replace(os.sep, "/"))
    return sorted(found)


def require_path(path: str, kind: str, missing_hint: str) -> None:
    """Raise FileNotFoundError naming ``path`` and the hint unless it exists.

    Args:
        path (str): expected file or folder.
        kind (str): "file" or "folder": what ``path`` must be.
        missing_hint (str): sentence telling the user how to create it.

    Raises:
        FileNotFoundError: if ``path`` is not an existing file (or folder).
    """
    exists = os.path.isfile(path) if kind == "file" else os.path.isdir(path)
    if not exists:
        raise FileNotFoundError(f"Expected {kind} not found: {path}. {missing_hint}")


@contextlib.contextmanager
def explain_json_errors(path: str, missing_hint: str) -> Iterator[None]:
    """Check that a JSON file exists, and explain JSON syntax errors raised while reading it.

    Args:
        path (str): JSON file read inside the ``with`` block.
        missing_hint (str): sentence telling the user how to create the file.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the block raises ``json.JSONDecodeError``; the message names the file.
    """
    require_path(path, "file", missing_hint)
    try:
        yield
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); the file is corrupt or truncated. "
            f"Delete it and create it again. {missing_hint}"
        ) from e


def load_json(path: str, missing_hint: str) -> Union[dict, list]:
    """Read a JSON file, with errors that say which file is wrong and what to do.

    Args:
        path (str): JSON file.
        missing_hint (str): sentence telling the user how to create the file.

    Returns:
        dict or list: the parsed content.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not valid JSON.
    """
    with explain_json_errors(path, missing_hint), open(path, encoding="utf-8") as f:
        return json.load(f)


def load_ood_image_folder(image_root: str, missing_hint: str = _DEFAULT_MISSING_HINT) -> List[dict]:
    """Load every image under a folder as an OOD dataset.

    Args:
        image_root (str): folder holding the images (searched recursively).
        missing_hint (str): sentence telling the user how to create the folder.

    Returns:
        list[dict]: Detectron2 dataset dicts with ``file_name``, ``image_id`` (the path relative
            to ``image_root``), ``height``, ``width`` (pixels) and ``annotations=[]``.
    """
    require_path(image_root, "folder", missing_hint)
    relative_paths = list_image_files(image_root)
    if not relative_paths:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {image_root}; "
            f"put the OOD images there. {missing_hint}"
        )
    return [
        _ood_record(os.path.join(image_root, relative), relative) for relative in relative_paths
    ]


def load_ood_image_list(
    json_file: str, image_root: str, missing_hint: str = _DEFAULT_MISSING_HINT
) -> List[dict]:
    """Load the images of a COCO-format file as an OOD dataset.

    Only the ``images`` list is read (``file_name`` and ``id`` required, ``height`` and ``width``
    read from the image header when absent); ``annotations`` and ``categories`` are ignored.

    Args:
        json_file (str): COCO-format JSON file.
        image_root (str): folder the ``file_name`` entries are relative to.
        missing_hint (str): sentence telling the user how to create the files.

    Returns:
        list[dict]: Detectron2 dataset dicts with ``file_name``, ``image_id``, ``height``,
            ``width`` (pixels) and ``annotations=[]``.
    """
    content = load_json(json_file, missing_hint)
    require_path(image_root, "folder", missing_hint)
    images = content.get("images") if isinstance(content, dict) else None
    if not isinstance(images, list):
        raise ValueError(
            f"{json_file} has no 'images' list; an OOD image list must be a COCO-format JSON "
            f'object such as {{"images": [{{"id": 1, "file_name": "a.jpg"}}]}}.'
        )
    return [_image_entry_to_record(entry, json_file, image_root) for entry in images]


def register_ood_dataset(
    name: str,
    image_root: str,
    json_file: Optional[str] = None,
    id_classes: Union[str, Sequence[str]] = "voc",
    missing_hint: str = _DEFAULT_MISSING_HINT,
    loader: Optional[Callable[[], List[dict]]] = None,
) -> None:
    """Register a set of OOD images (a folder or a COCO-format image list) with Detectron2.

    Registration does not touch the filesystem; files are read when
    ``DatasetCatalog.get(name)`` is called, which raises ``FileNotFoundError`` naming the missing
    path if they are absent.

    Args:
        name (str): dataset name, e.g. "my_ood_photos".
        image_root (str): folder of the images. Without ``json_file`` every file under it
            (recursively, sorted) whose extension is in ``IMAGE_EXTENSIONS`` is one image.
        json_file (str or None): COCO-format file listing the images (only ``images`` is read),
            with ``file_name`` relative to ``image_root``.
        id_classes (str or list[str]): the classes the detector was trained on, either a key of
            ``ID_CLASSES`` ("voc", "bdd") or the list of class names.
        missing_hint (str): sentence appended to missing-file errors, saying how to create them.
        loader (Callable[[], list[dict]] or None): loads the dataset dicts (each with
            ``annotations=[]``) instead of reading ``json_file`` or the folder, e.g. to create
            the files first; ``image_root`` and ``json_file`` then only go into the metadata,
            and ``missing_hint`` is unused.
    """
    id_dataset, class_names = resolve_id_classes(id_classes)
    if loader is not None:
        DatasetCatalog.register(name, loader)
    elif json_file is None:
        DatasetCatalog.register(
            name, lambda root=image_root: load_ood_image_folder(root, missing_hint)
        )
    else:
        DatasetCatalog.register(
            name,
            lambda json_file=json_file, root=image_root: load_ood_image_list(
                json_file, root, missing_hint
            ),
        )
    metadata = {"json_file": json_file} if json_file is not None else {}
    MetadataCatalog.get(name).set(
        image_root=image_root,
        id_dataset=id_dataset,
        id_classes=class_names,
        thing_classes=list(class_names),
        evaluator_type="ood",
        **metadata,
    )
    logger.debug("Registered OOD dataset %s (ID classes: %s).", name, id_dataset)


def resolve_id_classes(id_classes: Union[str, Sequence[str]]) -> Tuple[str, List[str]]:
    """Turn an ID benchmark key or a class list into (benchmark name, class names).

    Args:
        id_classes (str or list[str]): key of ``ID_CLASSES`` or the class names.

    Returns:
        tuple[str, list[str]]: the benchmark key ("custom" for a list) and the class names.
    """
    if isinstance(id_classes, str):
        if id_classes not in ID_CLASSES:
            raise ValueError(
                f"Unknown ID benchmark {id_classes!r}; use one of {sorted(ID_CLASSES)} or pass "
                "the list of class names the detector was trained on."
            )
        return id_classes, list(ID_CLASSES[id_classes])
    class_names = [str(c) for c in id_classes]
    if not class_names:
        raise ValueError("id_classes is empty; pass the class names the detector was trained on.")
    return "custom", class_names


def _image_entry_to_record(entry: dict, json_file: str, image_root: str) -> dict:
    """Convert one COCO ``images`` entry into an OOD dataset dict.

    Args:
        entry (dict): COCO image entry with ``file_name``, ``id`` and optionally ``height`` and
            ``width``.
        json_file (str): the file it came from, for error messages.
        image_root (str): folder ``file_name`` is relative to.

    Returns:
        dict: Detectron2 dataset dict with ``annotations=[]``.
    """
    if not isinstance(entry, dict) or "file_name" not in entry or "id" not in entry:
        raise ValueError(
            f"{json_file}: every entry of 'images' needs 'file_name' and 'id', got {entry!r}."
        )
    file_name = os.path.join(image_root, entry["file_name"])
    if "height" in entry and "width" in entry:
        return _record(file_name, entry["id"], int(entry["height"]), int(entry["width"]))
    return _ood_record(file_name, entry["id"])


def _ood_record(file_name: str, image_id: Union[int, str]) -> dict:
    """Build an OOD dataset dict, reading the size from the image header.

    Args:
        file_name (str): image path.
        image_id (int or str): unique image id.

    Returns:
        dict: Detectron2 dataset dict with ``annotations=[]``.
    """
    height, width = read_image_size(file_name)
    return _record(file_name, image_id, height, width)


def _record(file_name: str, image_id: Union[int, str], height: int, width: int) -> dict:
    """Build an OOD dataset dict.

    Args:
        file_name (str): image path.
        image_id (int or str): unique image id.
        height (int): image height in pixels.
        width (int): image width in pixels.

    Returns:
        dict: Detectron2 dataset dict with ``annotations=[]``.
    """
    return {
        "file_name": file_name,
        "image_id": image_id,
        "height": height,
        "width": width,
        "annotations": [],
    }

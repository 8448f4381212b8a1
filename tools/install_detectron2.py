#!/usr/bin/env python3
"""Install detectron2 into the running Python environment, by one of three routes.

Routes, tried in this order:

1. ``existing``: detectron2 is already importable -> it is left untouched.
2. ``source``: ``D2_SOURCE`` (or ``--source``) names a git URL or a local checkout of the
   official repository -> it is built from source, with its compiled ``_C`` ops.
3. ``wheel``: the PyPI redistribution ``sal-detectron2==0.7.2`` is downloaded, its sha256
   verified, and rewritten into a pure-Python wheel (no CPython-3.10 ``_C`` extension, no stray
   top-level ``tools`` package) that installs on any Python 3. Detectron2 then falls back to
   torchvision's ROIAlign/NMS and pycocotools, which is all VOS needs.

The script ends by building a tiny Faster R-CNN on the CPU and printing the route taken and the
detectron2/torch versions. It uses only the standard library, so it runs before anything else is
installed; torch must already be installed. Any failure prints one readable line and exits 1.

Usage::

    python tools/install_detectron2.py                      # choose automatically
    D2_SOURCE=https://github.com/facebookresearch/detectron2.git python tools/install_detectron2.py
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

WHEEL_PROJECT = "sal-detectron2"
WHEEL_VERSION = "0.7.2"
WHEEL_FILENAME = "sal_detectron2-0.7.2-cp310-none-any.whl"
WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
PURE_WHEEL_FILENAME = "sal_detectron2-0.7.2-py3-none-any.whl"

# Runtime dependencies that detectron2's own setup.py declares but the redistribution omits,
# plus the pins this environment needs (`pkg_resources` is gone from setuptools >= 81).
EXTRA_REQUIREMENTS = ["fvcore>=0.1.5", "iopath>=0.1.7", "setuptools<81"]
# The redistribution pins numpy<2; detectron2's Python code runs with numpy 2 (its build, training
# and inference were checked with numpy 2.4).
DROPPED_REQUIREMENTS = re.compile(r"^Requires-Dist: numpy\s*<\s*2\s*$")


class InstallError(RuntimeError):
    """A failure with a message meant for the user, printed without a traceback."""


def cache_dir() -> Path:
    """Folder where the verified redistribution wheel is kept between installs."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vos_det" / "wheels"


def choose_route(already_importable: bool, source: Optional[str]) -> str:
    """Return ``"existing"``, ``"source"`` or ``"wheel"``; an installed detectron2 always wins."""
    if already_importable:
        return "existing"
    if source:
        return "source"
    return "wheel"


def detectron2_importable() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _is_dropped_member(name: str) -> bool:
    """True for the compiled extension and anything in the top-level ``tools`` package."""
    top = name.split("/", 1)[0]
    if top == "tools":
        return True
    return top == "detectron2" and re.fullmatch(r"detectron2/_C\.[^/]*\.(so|pyd)", name) is not None


def _rewrite_metadata_file(name: str, data: bytes) -> bytes:
    text = data.decode("utf-8")
    if name.endswith(".dist-info/WHEEL"):
        lines = [ln for ln in text.splitlines() if not ln.startswith("Tag:")]
        lines = [
            "Root-Is-Purelib: true" if ln.startswith("Root-Is-Purelib:") else ln for ln in lines
        ]
        lines.append("Tag: py3-none-any")
        return ("\n".join(lines) + "\n").encode("utf-8")
    if name.endswith(".dist-info/top_level.txt"):
        kept = [ln for ln in text.splitlines() if ln.strip() and ln.strip() != "tools"]
        return ("\n".join(kept) + "\n").encode("utf-8")
    if name.endswith(".dist-info/METADATA"):
        header, sep, body = text.partition("\n\n")
        lines = [ln for ln in header.splitlines() if not DROPPED_REQUIREMENTS.match(ln)]
        declared = {
            ln.split(":", 1)[1].strip().split()[0]
            for ln in lines
            if ln.startswith("Requires-Dist:")
        }
        for requirement in EXTRA_REQUIREMENTS:
            if re.split(r"[<>=!~ ]", requirement)[0] not in declared:
                lines.append(f"Requires-Dist: {requirement}")
        return ("\n".join(lines) + sep + body).encode("utf-8")
    return data


def make_pure_python_wheel(src: Path, dest_dir: Path) -> Path:
    """Rewrite a platform wheel of detectron2 into a pure-Python ``py3-none-any`` wheel.

    Drops ``detectron2/_C.*.so`` and the top-level ``tools`` package, marks the wheel purelib,
    drops the ``numpy<2`` pin, adds the missing runtime requirements and regenerates ``RECORD``.

    Args:
        src (Path): the downloaded wheel.
        dest_dir (Path): folder to write the rewritten wheel into.

    Returns:
        Path: the rewritten wheel, named ``<name>-<version>-py3-none-any.whl``.
    """
    parts = src.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise InstallError(
            f"{src.name} is not a wheel file name (name-version-py-abi-platform.whl)"
        )
    out = dest_dir / f"{parts[0]}-{parts[1]}-py3-none-any.whl"
    try:
        zin = zipfile.ZipFile(src)
    except zipfile.BadZipFile as e:
        raise InstallError(f"{src} is not a valid wheel (zip) file: {e}") from e
    records: list[tuple[str, str, str]] = []
    record_name = None
    with zin, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            name = info.filename
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            if _is_dropped_member(name) or name.endswith("/"):
                continue
            data = _rewrite_metadata_file(name, zin.read(info))
            zout.writestr(name, data)
            records.append((name, _record_hash(data), str(len(data))))
        if record_name is None:
            raise InstallError(f"{src} has no .dist-info/RECORD: not a valid wheel")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(records)
        writer.writerow((record_name, "", ""))
        zout.writestr(record_name, buf.getvalue())
    return out


def _run(cmd: list[str], failure: str) -> None:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise InstallError(f"{failure} (command exited {result.returncode}: {' '.join(cmd)})")


def download_verified_wheel(directory: Path) -> Path:
    """Return the redistribution wheel in ``directory``, downloading it if needed; checks sha256."""
    wheel = directory / WHEEL_FILENAME
    if not wheel.exists():
        directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.10",
            "--dest",
            str(directory),
            f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        ]
        _run(
            cmd,
            f"could not download {WHEEL_PROJECT}=={WHEEL_VERSION} from the package "
            "registry (no network to PyPI?); set D2_SOURCE to a local detectron2 checkout "
            "to build from source instead",
        )
    if not wheel.exists():
        raise InstallError(f"pip reported success but {wheel} is missing")
    actual = sha256_of(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise InstallError(
            f"sha256 mismatch for {WHEEL_FILENAME}: expected {WHEEL_SHA256}, got {actual}; "
            "the file was deleted, run again to re-download"
        )
    return wheel


def install_from_wheel() -> None:
    wheel = download_verified_wheel(cache_dir())
    with tempfile.TemporaryDirectory() as tmp:
        pure = make_pure_python_wheel(wheel, Path(tmp))
        _run(
            [sys.executable, "-m", "pip", "install", str(pure)],
            "installing the rewritten detectron2 wheel or its dependencies failed",
        )


def install_from_source(source: str) -> None:
    """Build detectron2 from a git URL or a local checkout (needs a compiler and torch)."""
    if os.path.isdir(source):
        if not os.path.exists(os.path.join(source, "setup.py")):
            raise InstallError(
                f"D2_SOURCE={source} is a folder without setup.py: not a detectron2 checkout"
            )
        target = source
    elif "://" in source or source.startswith("git@"):
        target = source if source.startswith("git+") else "git+" + source
    else:
        raise InstallError(f"D2_SOURCE={source} is neither an existing folder nor a git URL")
    # No build isolation: the build needs the torch already installed here.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-build-isolation",
            target,
            *EXTRA_REQUIREMENTS,
        ],
        f"building detectron2 from {source} failed (see the compiler output above)",
    )


def smoke_test() -> str:
    """Build a tiny GN Faster R-CNN on the CPU and run it once; return a version line."""
    code = (
        "import torch, detectron2\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import build_model\n"
        "cfg = get_cfg(); cfg.MODEL.DEVICE = 'cpu'; cfg.MODEL.RESNETS.DEPTH = 18\n"
        "cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64; cfg.MODEL.RESNETS.NORM = 'GN'\n"
        "cfg.MODEL.BACKBONE.NAME = 'build_resnet_fpn_backbone'; cfg.MODEL.FPN.OUT_CHANNELS = 32\n"
        "cfg.MODEL.RESNETS.OUT_FEATURES = ['res2', 'res3', 'res4', 'res5']\n"
        "cfg.MODEL.FPN.IN_FEATURES = ['res2', 'res3', 'res4', 'res5']\n"
        "cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]\n"
        "cfg.MODEL.RPN.IN_FEATURES = ['p2', 'p3', 'p4', 'p5', 'p6']\n"
        "cfg.MODEL.ROI_HEADS.NAME = 'StandardROIHeads'\n"
        "cfg.MODEL.ROI_HEADS.IN_FEATURES = ['p2', 'p3', 'p4', 'p5']\n"
        "cfg.MODEL.ROI_BOX_HEAD.NAME = 'FastRCNNConvFCHead'; cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2\n"
        "cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7\n"
        "model = build_model(cfg).eval()\n"
        "with torch.no_grad():\n"
        "    model([{'image': torch.zeros(3, 64, 64)}])\n"
        "print(f'detectron2 {detectron2.__version__} at {detectron2.__path__[0]}; torch {torch.__version__}')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-3:]) or "(no output)"
        raise InstallError(f"detectron2 is installed but a Faster R-CNN failed on the CPU:\n{tail}")
    return result.stdout.strip()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        default=os.environ.get("D2_SOURCE"),
        help="git URL or local checkout of detectron2 to build (default: $D2_SOURCE)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the route that would be taken and exit without installing",
    )
    args = parser.parse_args(argv)
    try:
        if importlib.util.find_spec("torch") is None:
            raise InstallError("torch is not installed in this Python; install torch first")
        route = choose_route(detectron2_importable(), args.source)
        if args.dry_run:
            print(route)
            return 0
        if route == "existing":
            print("detectron2 is already installed: leaving it untouched")
        elif route == "source":
            install_from_source(args.source)
        else:
            install_from_wheel()
        print(f"detectron2 install route: {route}; {smoke_test()}")
    except InstallError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

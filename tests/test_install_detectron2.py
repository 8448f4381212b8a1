"""The detectron2 installer: route choice, wheel rewriting, hash check, installability."""

import base64
import csv
import hashlib
import importlib.util
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tool_scripts import load_tool

installer = load_tool("install_detectron2")


def _build_platform_wheel(directory: Path) -> Path:
    """A small wheel shaped like the redistribution: cp310 tag, a `_C` .so, top-level `tools`."""
    dist_info = "sal_detectron2-0.7.2.dist-info"
    files = {
        "detectron2/__init__.py": b"__version__ = '0.7.2'\n",
        "detectron2/layers/__init__.py": b"",
        "detectron2/_C.cpython-310-x86_64-linux-gnu.so": b"\x7fELF not really",
        "tools/__init__.py": b"",
        "tools/train_net.py": b"print('stray')\n",
        f"{dist_info}/METADATA": (
            b"Metadata-Version: 2.1\nName: sal-detectron2\nVersion: 0.7.2\n"
            b"Requires-Dist: numpy<2\nRequires-Dist: yacs>=0.1.8\n\nLong description.\n"
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            b"Tag: cp310-cp310-linux_x86_64\n"
        ),
        f"{dist_info}/top_level.txt": b"detectron2\ntools\n",
    }
    path = directory / "sal_detectron2-0.7.2-cp310-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        record = io.StringIO()
        for name, data in files.items():
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.write(f"{name},sha256={digest.decode()},{len(data)}\n")
        record.write(f"{dist_info}/RECORD,,\n")
        z.writestr(f"{dist_info}/RECORD", record.getvalue())
    return path


def _cached_real_wheel():
    path = installer.cache_dir() / installer.WHEEL_FILENAME
    return path if path.exists() else None


@pytest.fixture(params=["built", "downloaded"])
def platform_wheel(request, tmp_path):
    if request.param == "built":
        return _build_platform_wheel(tmp_path)
    real = _cached_real_wheel()
    if real is None:
        pytest.skip("the redistribution wheel is not in the installer's cache")
    return real


def _check_record(z: zipfile.ZipFile) -> None:
    record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(z.read(record_name).decode())))
    listed = {row[0] for row in rows}
    assert listed == set(z.namelist())
    for name, digest, size in rows:
        if name == record_name:
            continue
        data = z.read(name)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert digest == "sha256=" + expected.decode(), name
        assert int(size) == len(data), name


def test_rewritten_wheel_is_pure_python(platform_wheel, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    pure = installer.make_pure_python_wheel(platform_wheel, out_dir)
    assert pure.name == "sal_detectron2-0.7.2-py3-none-any.whl"
    with zipfile.ZipFile(pure) as z:
        names = z.namelist()
        assert not [n for n in names if n.startswith("tools/")]
        assert not [n for n in names if n.startswith("detectron2/_C")]
        assert "detectron2/__init__.py" in names
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        wheel_meta = z.read(f"{dist_info}/WHEEL").decode()
        assert "Tag: py3-none-any" in wheel_meta and "cp310" not in wheel_meta
        assert "Root-Is-Purelib: true" in wheel_meta
        assert z.read(f"{dist_info}/top_level.txt").decode().split() == ["detectron2"]
        metadata = z.read(f"{dist_info}/METADATA").decode()
        assert "numpy<2" not in metadata.replace(" ", "")
        assert "Requires-Dist: fvcore>=0.1.5" in metadata
        _check_record(z)


@pytest.mark.slow
def test_rewritten_wheel_installs_on_this_python(platform_wheel, tmp_path):
    pure = installer.make_pure_python_wheel(platform_wheel, tmp_path)
    target = tmp_path / "site"
    # pip refuses the original cp310 wheel on other Pythons; the rewritten one must install.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(pure),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "detectron2" / "__init__.py").exists()
    assert not (target / "tools").exists()
    assert not list((target / "detectron2").glob("_C*"))


def test_hash_mismatch_is_reported_and_file_removed(tmp_path, monkeypatch):
    bogus = tmp_path / installer.WHEEL_FILENAME
    bogus.write_bytes(b"not the wheel")
    with pytest.raises(installer.InstallError, match="sha256 mismatch"):
        installer.download_verified_wheel(tmp_path)
    assert not bogus.exists()


def test_not_a_wheel_is_reported(tmp_path):
    bad = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    bad.write_bytes(b"garbage")
    with pytest.raises(installer.InstallError, match="not a valid wheel"):
        installer.make_pure_python_wheel(bad, tmp_path)


@pytest.mark.parametrize(
    "importable, source, route",
    [
        (True, None, "existing"),
        (True, "https://example.invalid/detectron2.git", "existing"),
        (False, "/some/checkout", "source"),
        (False, None, "wheel"),
        (False, "", "wheel"),
    ],
)
def test_route_choice(importable, source, route):
    assert installer.choose_route(importable, source) == route


def test_dry_run_reports_existing_install(capsys):
    assert importlib.util.find_spec("detectron2") is not None
    assert installer.main(["--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "existing"


def test_source_route_rejects_a_folder_without_setup_py(tmp_path):
    with pytest.raises(installer.InstallError, match="not a detectron2 checkout"):
        installer.install_from_source(str(tmp_path))
    with pytest.raises(installer.InstallError, match="neither an existing folder nor a git URL"):
        installer.install_from_source(str(tmp_path / "missing"))


@pytest.mark.slow
def test_no_tools_package_in_site_packages(tmp_path):
    # Isolated mode and a neutral working directory: only site-packages can provide `tools`.
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import importlib.util; print(importlib.util.find_spec('tools'))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"

"""Both FAISS install routes, for real, in fresh virtual environments (no system site-packages): admap from the
checkout without its dependencies plus only its `cpu` or `gpu` extra's requirements with theirs (torch and the rest
stay out: the routes differ only in FAISS, and the GPU build alone is about 740 MB to download), and the whole
`.[dev,gpu]` install resolved without installing it."""

import json
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from admap.faiss_build import FAISS_DISTRIBUTIONS

pytestmark = pytest.mark.slow
needs_gpu_wheels = pytest.mark.skipif(
    platform.system() != "Linux" or sys.version_info >= (3, 14), reason="faiss-gpu-cu12 has wheels for Linux, <3.14"
)

ROOT = Path(__file__).resolve().parents[1]
# What setuptools needs to build admap (pyproject.toml's packages, readme and licence file).
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "admap", "baselines", "experiments")
PIP_TIMEOUT_S = 900
# Run inside the environment: admap's own FAISS import, then a flat inner-product search.
FAISS_PROBE = """
import json
import numpy as np
from admap.faiss_build import import_faiss
faiss = import_faiss()
index = faiss.IndexFlatIP(3)
index.add(np.eye(3, dtype=np.float32))
scores, ids = index.search(np.array([[0.0, 2.0, 1.0]], dtype=np.float32), 2)
has_gpu_api = hasattr(faiss, "StandardGpuResources")
gpus = faiss.get_num_gpus() if has_gpu_api else 0
print(json.dumps({"ids": ids.tolist(), "scores": scores.tolist(), "gpu_api": has_gpu_api, "gpus": gpus}))
"""


@pytest.fixture(scope="module")
def admap_source(tmp_path_factory) -> Path:
    """A copy of the checkout's buildable files, so that building admap leaves nothing in the checkout."""
    source = tmp_path_factory.mktemp("admap-source")
    for part in SOURCE_PARTS:
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / part, source / part)
    return source


@pytest.fixture
def venv_python(tmp_path):
    """A fresh virtual environment's python, removed afterwards (the GPU route fills about 1.3 GB)."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=PIP_TIMEOUT_S)
    yield tmp_path / "venv" / "bin" / "python"
    shutil.rmtree(tmp_path / "venv", ignore_errors=True)


def run(python: Path, *args: str) -> subprocess.CompletedProcess:
    # cwd outside the checkout: `import admap` must find the installed copy.
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=python.parents[2]
    )


def pip(python: Path, *args: str) -> None:
    result = run(python, "-m", "pip", *args)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def install_admap_with_extra(python: Path, source: Path, extra: str) -> list[str]:
    """admap without dependencies, then only what its `extra` adds, read from the built package's metadata."""
    pip(python, "install", "-q", "--no-deps", str(source))
    listed = run(python, "-c", "import importlib.metadata as m, json; print(json.dumps(m.requires('admap')))")
    assert listed.returncode == 0, listed.stderr
    requirements = [Requirement(line) for line in json.loads(listed.stdout)]
    # The extra's own lines: true with the extra named, false without it.
    specs = [
        f"{r.name}{r.specifier}"
        for r in requirements
        if r.marker is not None and r.marker.evaluate({"extra": extra}) and not r.marker.evaluate({"extra": ""})
    ]
    assert specs, f"admap has no requirements for the extra {extra!r}"
    pip(python, "install", "-q", *specs)
    return specs


def installed_faiss(python: Path) -> set[str]:
    listed = run(python, "-m", "pip", "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    return {row["name"].lower() for row in json.loads(listed.stdout)} & set(FAISS_DISTRIBUTIONS)


def probe(python: Path) -> dict:
    result = run(python, "-c", FAISS_PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_flat_search_works(found: dict) -> None:
    # The query is closest to basis vector 1, then 2.
    assert found["ids"] == [[1, 2]]
    assert found["scores"] == [[2.0, 1.0]]


def test_cpu_route_installs_faiss_cpu_alone_and_it_searches(venv_python, admap_source):
    specs = install_admap_with_extra(venv_python, admap_source, "cpu")
    assert [Requirement(s).name for s in specs] == ["faiss-cpu"]
    assert installed_faiss(venv_python) == {"faiss-cpu"}
    found = probe(venv_python)
    assert_flat_search_works(found)
    assert not found["gpu_api"]


@needs_gpu_wheels
def test_gpu_route_installs_faiss_gpu_alone_imports_without_a_device_and_repairs_a_mix(venv_python, admap_source):
    specs = install_admap_with_extra(venv_python, admap_source, "gpu")
    assert [Requirement(s).name for s in specs] == ["faiss-gpu-cu12"]
    assert installed_faiss(venv_python) == {"faiss-gpu-cu12"}
    found = probe(venv_python)
    assert_flat_search_works(found)
    assert found["gpu_api"] and found["gpus"] >= 0

    # The accident the extras exist to prevent: the CPU build installed over the GPU one.
    pip(venv_python, "install", "-q", "faiss-cpu")
    mixed = run(venv_python, "-c", FAISS_PROBE)
    assert mixed.returncode != 0
    message = mixed.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError") and "faiss-cpu" in message and "faiss-gpu-cu12" in message
    # The uninstall the message gives, then the GPU extra again, leaves a working GPU build.
    uninstall = re.search(r"pip uninstall -y [a-z0-9\- ]+", message)
    assert uninstall, message
    pip(venv_python, *uninstall.group().split()[1:])
    pip(venv_python, "install", "-q", *specs)
    assert installed_faiss(venv_python) == {"faiss-gpu-cu12"}
    assert probe(venv_python)["gpu_api"]


@needs_gpu_wheels
def test_gpu_route_resolves_with_every_dependency_to_no_cpu_build(venv_python, admap_source, tmp_path):
    """The whole `.[dev,gpu]` install, resolved but not installed: nothing on the route pulls faiss-cpu back."""
    report = tmp_path / "report.json"
    # This environment's torch, so that the resolver takes the build already on this machine.
    torch = f"torch=={Version(metadata.version('torch')).public}"
    pip(venv_python, "install", "-q", "--dry-run", "--report", str(report), torch, f"{admap_source}[dev,gpu]")
    resolved = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"admap", "faiss-gpu-cu12", "trl"} <= resolved
    assert resolved & set(FAISS_DISTRIBUTIONS) == {"faiss-gpu-cu12"}


INSTALLED_FILES = """
import json, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
data = site / "admap" / "evaluation_sets"
print(json.dumps({
    "top_level": sorted(p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")),
    "packages": sorted(str(p.parent.relative_to(site)) for p in site.rglob("__init__.py")),
    "shipped_data": sorted(str(p.relative_to(site)) for p in data.rglob("*") if p.is_file()),
}))
"""


def test_the_wheel_installs_the_harness_under_admap_names_with_every_package_and_its_data(venv_python, admap_source):
    pip(venv_python, "install", "-q", "--no-deps", str(admap_source))
    listed = run(venv_python, "-c", INSTALLED_FILES)
    assert listed.returncode == 0, listed.stderr
    installed = json.loads(listed.stdout)
    assert {"admap", "admap_baselines", "admap_experiments"} <= set(installed["top_level"])
    assert not {"experiments", "baselines"} & set(installed["top_level"])
    renamed = {"baselines": "admap_baselines", "experiments": "admap_experiments"}
    source_packages = {
        str(path.parent.relative_to(ROOT))
        for part in ("admap", "baselines", "experiments")
        for path in (ROOT / part).rglob("__init__.py")
    }
    expected = {
        renamed.get(name.split("/")[0], name.split("/")[0]) + name[len(name.split("/")[0]) :]
        for name in source_packages
    }
    assert expected <= set(installed["packages"])
    shipped = {
        str(path.relative_to(ROOT)) for path in (ROOT / "admap" / "evaluation_sets").rglob("*") if path.is_file()
    }
    assert shipped and shipped == set(installed["shipped_data"])


def test_the_wheel_carries_the_project_metadata_and_its_admap_reports_its_version(admap_source, tmp_path):
    """The wheel built from the checkout, read as an index would read it, then installed beside this environment's
    dependencies (not the checkout's editable admap): its `admap --version` is pyproject.toml's version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    pip(python, "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(admap_source))
    (wheel,) = (tmp_path / "dist").glob("admap-*.whl")
    dist_info = f"admap-{project['version']}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        fields = HeaderParser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        shipped_licence = archive.read(f"{dist_info}/licenses/LICENSE")
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert (fields["Name"], fields["Version"]) == ("admap", project["version"])
    assert fields["License-Expression"] == project["license"] and fields.get_all("License-File") == ["LICENSE"]
    assert shipped_licence == (ROOT / "LICENSE").read_bytes()
    assert fields.get_all("Classifier") == project["classifiers"]
    assert fields["Keywords"].split(",") == project["keywords"]
    assert fields.get_all("Project-URL") == [f"{label}, {url}" for label, url in project["urls"].items()]
    assert fields["Author"] == project["authors"][0]["name"] and fields["Requires-Python"] == ">=3.11"
    assert all(f"{script} = {target}" in entry_points for script, target in project["scripts"].items())

    pip(python, "install", "-q", "--no-deps", str(wheel))
    where = run(python, "-c", "import admap, importlib.metadata as m; print(admap.__file__, m.version('admap'))")
    assert where.returncode == 0, where.stderr
    module, version = where.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "venv") and version == project["version"]
    reported = run(tmp_path / "venv" / "bin" / "admap", "--version")
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert reported.stdout == f"admap {project['version']}\n"

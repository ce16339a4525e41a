"""admap's declared dependencies, packages and FAISS import: one FAISS build per install route, pinned extras,
every package folder installed, and an ImportError that says how to install FAISS when it is missing, mixed or
broken."""

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

import admap
from admap.cli import main
from admap.faiss_build import FAISS_DISTRIBUTIONS, import_faiss, installed_faiss_distributions
from admap.provenance import package_versions, provenance

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
# Fast-moving packages whose releases change the APIs admap uses or pin torch and transformers.
BOUNDED = {"trl", "peft", "accelerate", "deepspeed", "vllm"}


def extra_requirements(extra: str) -> list[Requirement]:
    """An extra's requirements, with `admap[...]` self-references expanded."""
    found = []
    for line in EXTRAS[extra]:
        requirement = Requirement(line)
        if requirement.name == PROJECT["name"]:
            found += [r for inner in sorted(requirement.extras) for r in extra_requirements(inner)]
        else:
            found.append(requirement)
    return found


def faiss_builds(requirements: list[Requirement]) -> list[str]:
    return [r.name for r in requirements if r.name in FAISS_DISTRIBUTIONS]


def test_each_faiss_route_names_one_build_and_nothing_else_names_any():
    assert faiss_builds([Requirement(line) for line in PROJECT["dependencies"]]) == []
    assert faiss_builds(extra_requirements("cpu")) == ["faiss-cpu"]
    assert faiss_builds(extra_requirements("gpu")) == ["faiss-gpu-cu12"]
    # So `.[dev,gpu]` and `.[train,gpu]` hold the GPU build alone.
    for extra in set(EXTRAS) - {"cpu", "gpu"}:
        assert faiss_builds(extra_requirements(extra)) == [], extra


def test_training_and_vllm_packages_have_lower_and_upper_bounds():
    found = set()
    for extra in EXTRAS:
        for requirement in extra_requirements(extra):
            if requirement.name in BOUNDED:
                operators = {spec.operator for spec in requirement.specifier}
                assert operators & {">=", ">"} and operators & {"<", "<="}, f"{extra}: {requirement}"
                found.add(requirement.name)
    assert found == BOUNDED


def run_import_faiss(setup: str) -> subprocess.CompletedProcess:
    """`import_faiss()` in a fresh interpreter after `setup`, so that nothing is cached from this process."""
    code = f"{setup}\nfrom admap.faiss_build import import_faiss\nimport_faiss()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def import_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: "), result.stderr
    return message


def assert_names_both_routes(message: str) -> None:
    assert "admap[cpu]" in message and "faiss-cpu" in message
    assert "admap[gpu]" in message and "faiss-gpu-cu12" in message


def pretend_installed(builds: tuple[str, ...]) -> str:
    """Setup code under which importlib.metadata sees exactly ``builds`` among the FAISS distributions."""
    return (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "def version(name):\n"
        f"    if name in {FAISS_DISTRIBUTIONS!r}:\n"
        f"        if name in {builds!r}:\n"
        "            return '1.0'\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.version = version\n"
    )


def test_import_faiss_returns_a_working_module():
    index = import_faiss().IndexFlatIP(2)
    index.add(np.eye(2, dtype=np.float32))
    assert index.ntotal == 2


def test_missing_faiss_names_both_install_routes():
    # None in sys.modules makes `import faiss` fail as it does where no build is installed.
    message = import_error(run_import_faiss(pretend_installed(()) + "import sys\nsys.modules['faiss'] = None\n"))
    assert "not installed" in message
    assert_names_both_routes(message)


def test_a_build_removed_from_under_another_is_reported_as_broken(tmp_path):
    # What `pip uninstall faiss-cpu` leaves of a mixed install: a `faiss` folder without its modules, which
    # imports as an empty namespace package. Only that folder is searched for `faiss`.
    (tmp_path / "faiss" / "contrib").mkdir(parents=True)
    leftover_only = (
        "import importlib.machinery, sys\n"
        "class LeftoverFinder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        return importlib.machinery.PathFinder.find_spec(name, [{str(tmp_path)!r}]) "
        "if name == 'faiss' else None\n"
        "sys.meta_path.insert(0, LeftoverFinder())\n"
    )
    message = import_error(run_import_faiss(pretend_installed(("faiss-gpu-cu12",)) + leftover_only))
    assert "broken" in message and "pip uninstall -y faiss-gpu-cu12" in message
    assert_names_both_routes(message)


def test_two_installed_builds_name_the_uninstall_and_both_routes():
    builds = ("faiss-cpu", "faiss-gpu-cu12")
    message = import_error(run_import_faiss(pretend_installed(builds)))
    assert f"pip uninstall -y {' '.join(builds)}" in message
    assert_names_both_routes(message)


def test_package_versions_report_the_installed_faiss_build(monkeypatch):
    real_version = metadata.version

    def only_the_gpu_build(name):
        if name == "faiss-gpu-cu12":
            return "1.14.1"
        if name in FAISS_DISTRIBUTIONS:
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", only_the_gpu_build)
    versions = package_versions()
    assert versions["faiss-gpu-cu12"] == "1.14.1"
    assert not set(versions) & (set(FAISS_DISTRIBUTIONS) - {"faiss-gpu-cu12"})


def test_package_versions_report_this_environments_faiss_build():
    installed = installed_faiss_distributions()
    assert installed, "the tests need one FAISS build (scripts/setup.sh installs faiss-cpu)"
    versions = package_versions()
    assert {name: versions[name] for name in FAISS_DISTRIBUTIONS if name in versions} == installed


def test_every_package_folder_is_installed():
    """pyproject lists its packages by hand (two install under names other than their folders'): a new
    subpackage must be listed, or the wheel would leave it out."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {name: setuptools["package-dir"].get(name, name) for name in setuptools["packages"] if "." not in name}
    expected = set()
    for name, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join((name, *relative)))
    assert expected == set(setuptools["packages"])


def test_the_version_is_written_once_and_every_report_of_it_is_the_installed_metadata(capsys):
    """pyproject.toml's version is the one written; `admap --version` and what runs record read it from the
    installed package's metadata."""
    installed = metadata.version("admap")
    # An editable install reads pyproject.toml when it is installed: after a version change, reinstall.
    assert installed == PROJECT["version"], "pyproject.toml's version changed since admap was installed"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"admap {installed}\n"
    assert provenance()["admap_version"] == package_versions()["admap"] == installed
    assert admap.__version__ == installed


def test_the_metadata_names_its_licence_file_and_what_the_project_is():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert PROJECT["authors"] and PROJECT["keywords"] and PROJECT["urls"]
    # PEP 639: a licence expression replaces the licence classifiers, which setuptools then refuses.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    python_classifiers = {c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if c.count(" :: ") == 2}
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in python_classifiers  # the tested Python

"""cometbench installs anywhere: the wheel carries the fixtures, and ``cometbench serve`` runs from any folder.

``fixtures/`` is installed as the package ``emulator.fixtures`` and ``scenarios/`` (the scenario pack)
as ``bench.pack`` (pyproject.toml lists every package; automatic discovery cannot map those folders),
and both are read through importlib.resources.  The last test builds the wheel from a copy of the
repository, installs it into a new virtual environment whose dependencies come from this one (a
``.pth`` line, so nothing is downloaded and the editable install of the source tree is not visible),
and runs ``cometbench serve --free-ports`` and a scenario of the pack from an empty folder.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
NOT_COPIED = {".git", ".venv", "node_modules", "build", "dist", "reports", ".hypothesis", "__pycache__"}


def test_every_package_of_the_source_tree_is_listed():
    """A package missing from pyproject.toml would be missing from the wheel (editable installs hide it)."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("emulator", "bench")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    found |= {"emulator." + ".".join(p.parent.relative_to(ROOT).parts)
              for p in (ROOT / "fixtures").rglob("__init__.py")}
    found |= {"bench.pack" + "".join("." + part for part in p.parent.relative_to(ROOT / "scenarios").parts)
              for p in (ROOT / "scenarios").rglob("__init__.py")}
    assert found == set(SETUPTOOLS["packages"])
    assert SETUPTOOLS["package-dir"] == {"emulator.fixtures": "fixtures", "bench.pack": "scenarios"}


def test_every_fixture_file_is_package_data():
    data = SETUPTOOLS["package-data"]
    for path in (ROOT / "fixtures").rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        package = ".".join(("emulator", *path.parent.relative_to(ROOT).parts))
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in data.get(package, [])), path


def test_fixtures_resolve_through_importlib_resources():
    from emulator.freeswitch.conference_profiles import DEFAULT_PATH
    from emulator.freeswitch.media import DEFAULT_PROFILES_PATH, link_presets

    root = files("emulator.fixtures")
    for name in ("conference.conf.xml", "network_profiles.toml"):
        assert root.joinpath(name).is_file()
    assert root.joinpath("parity", "cometql-4.09.jsonl").is_file()
    assert DEFAULT_PATH.is_file() and DEFAULT_PROFILES_PATH.is_file()
    assert {"loopback", "4g"} <= set(link_presets())


def copy_tree(src: Path, dst: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_COPIED or n.endswith((".egg-info", ".sqlite"))}

    shutil.copytree(src, dst, ignore=ignore)


@pytest.mark.slow
def test_built_wheel_serves_from_another_folder(tmp_path):
    copy_tree(ROOT, tmp_path / "src")
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(tmp_path / "src")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("cometbench-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    installed = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (trio, hypercorn, ...) from this environment; a path line does not run its .pth files,
    # so the editable install of the source tree stays invisible
    Path(site, "cometbench-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(py), "-c", "import emulator.fixtures as f; print(f.path('conference.conf.xml'))"],
                           capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv) and Path(where.stdout.strip()).is_file()

    proc = subprocess.Popen([str(venv / "bin" / "cometbench"), "serve", "--free-ports"], cwd=elsewhere, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.poll() is not None else "no ready line"
        ready = json.loads(line)
        assert ready["ready"] is True and ready["ws"] > 0 and ready["sip_ws"] > 0 and ready["esl"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert list(elsewhere.iterdir()) == []  # with --state :memory: nothing is written to the working folder

    # the scenario pack and the report schema ship too: a story of the pack runs from the wheel
    ran = subprocess.run([str(venv / "bin" / "cometbench"), "run", "hangup_rejoin", "--report-dir", "out"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    schema_path = subprocess.run([str(py), "-c", "import bench.report as r, importlib.resources as i; "
                                                 "print(i.files(r).joinpath('report.schema.json'))"],
                                 capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert Path(schema_path.stdout.strip()).is_relative_to(venv) and Path(schema_path.stdout.strip()).is_file()
    assert json.loads((elsewhere / "out" / "report.json").read_text())["scenarios"][0]["passed"] is True

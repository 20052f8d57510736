"""The pytest plugin as a user's suite meets it: the example file runs as it is, in a folder of its own
(no configuration from this repository), and a story's unjudged expectations fail the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    (folder / "pytest.ini").write_text("[pytest]\n")       # the user's own (empty) configuration
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, timeout=180, cwd=folder)


def test_the_plugin_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "cometbench"]
    assert entry.value == "bench.pytest_plugin"


def test_the_example_file_runs_in_a_users_suite(tmp_path):
    shutil.copy(ROOT / "examples" / "test_my_app.py", tmp_path / "test_my_app.py")
    done = pytest_in(tmp_path, "test_my_app.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_fixtures_options_and_a_failing_story(tmp_path):
    (tmp_path / "test_story.py").write_text(textwrap.dedent('''
        import pytest

        pytestmark = pytest.mark.trio

        async def test_seed_and_profile(cometbench_scenario, cometbench_seed, cometbench_profile, autojump_clock):
            assert (cometbench_seed, cometbench_profile) == (9, "lenient")
            assert cometbench_scenario.profile == "lenient" and not cometbench_scenario.faithful
            assert cometbench_scenario.stack.profile.name == "lenient"

        async def test_unjudged_expectations_are_judged_when_the_test_ends(cometbench_scenario, autojump_clock):
            s = cometbench_scenario
            await s.meet("101")
            s.after("patient.refresh", within=5).expect("doctor.onOut", note="told at once")
            await s.patient.refresh()

        async def test_a_story_function_runs_on_its_own_stack(cometbench_run, autojump_clock):
            async def story(s):
                with s.step("alone"):
                    await s.doctor.open_page()
                    await s.doctor.join("101")
                    await s.wait("doctor.onCallStart", within=3)
            result = await cometbench_run(story)
            assert not result.passed
            assert result.failure == ("story: step 'alone': waited 3 s for doctor.onCallStart since the step began: "
                                      "it did not happen")
    '''))
    done = pytest_in(tmp_path, "test_story.py", "--cometbench-seed", "9", "--cometbench-profile", "lenient")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout, done.stdout
    assert "FAILED test_story.py::test_unjudged_expectations_are_judged_when_the_test_ends" in done.stdout
    assert ("bench.scenario.errors.ScenarioFailure: test_unjudged_expectations_are_judged_when_the_test_ends: "
            "doctor.onOut within 5 s after patient.refresh (told at once) -- seen 0 times") in done.stdout

"""The scenario API: a scenario is a plain async Python file in scenarios/ that tells one story.

::

    from bench.scenario import Scenario

    async def story(s: Scenario) -> None:
        doctor, patient = s.doctor, s.patient
        with s.step("both open the page and join room 101"):
            ...

* ``story.py`` -- :class:`Scenario`, the ``s`` a story gets: actors, steps, waits, expectations,
  faults and links, metric marks;
* ``actors.py`` -- :class:`Actor` (a participant with the story's vocabulary);
* ``timeline.py`` -- every event of every side on one timeline; ``expect.py`` -- windows and
  expectations over it; ``faults.py`` -- server faults (``s.faults``) and link actions
  (``s.link(actor)``) on the stack's own controls; ``network.py`` -- the run's network profiles per
  actor; ``errors.py`` -- how a scenario fails, and the powers of the in-process stack a story may need;
* ``loader.py`` -- finding and loading scenario files; ``runner.py`` -- one story on a fresh stack
  (:func:`tell`, :func:`run_one`) and a whole run to a report directory (:class:`Run`).

README's "Scenarios" section shows how to write one; ``scenarios/two_party_call.py`` is the one to
copy.
"""

from bench.scenario.actors import Actor
from bench.scenario.errors import NotAvailable, ScenarioError, ScenarioFailure
from bench.scenario.loader import ScenarioSpec, default_pack, load, pack, resolve
from bench.scenario.runner import Run, RunSettings, ScenarioResult, run_one, tell
from bench.scenario.story import Scenario
from bench.scenario.timeline import Happening, Timeline

__all__ = ["Scenario", "Actor", "Happening", "Timeline", "ScenarioFailure", "ScenarioError", "NotAvailable",
           "ScenarioSpec", "load", "pack", "default_pack", "resolve", "tell", "run_one", "Run", "RunSettings",
           "ScenarioResult"]

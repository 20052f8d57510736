"""How a scenario fails: every failure names the scenario, the step and the cause.

* :class:`ScenarioFailure` -- the story did not go as told: an expectation or a check that did not
  hold, a wait that timed out.  Raised by the scenario API; the runner adds the scenario name.
* :class:`ScenarioError` -- the story is written wrong: an unknown actor, event, stage or profile,
  a bad argument.  Also a failure of that scenario (never of the run).
* :class:`NotAvailable` -- an action that needs a power of the in-process stack the run's target does
  not have (``cometbench run --target ...`` is an external deployment: it cannot be restarted from
  here, its links cannot be conditioned, its FreeSWITCH cannot be looked into): the message names the
  action and what it needs.  A :class:`ScenarioError`.

The powers (:data:`POWERS`) are what a scenario file declares in ``NEEDS``, so a run against a target
skips the stories it cannot tell before they start instead of failing half-way through them.
"""

from __future__ import annotations

__all__ = ["ScenarioFailure", "ScenarioError", "NotAvailable", "POWERS", "describe_needs"]

#: Every power of the in-process stack a story can need, and how a message names it.
POWERS = {
    "faults": "server faults (stack.faults: restarts, a slow CometQL)",
    "links": "link conditions (stack.links: profiles, partitions, lost networks)",
    "freeswitch": "a look inside FreeSWITCH (the in-process bridge: its events, members, flags, ESL)",
}


def describe_needs(needs: tuple[str, ...] | list[str] | set[str]) -> str:
    """``"server faults (...) and link conditions (...)"``."""
    texts = [POWERS[n] for n in sorted(needs)]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


class ScenarioFailure(AssertionError):
    """The story did not happen as told."""

    def __init__(self, cause: str, *, step: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.step = step

    def __str__(self) -> str:
        return self.cause


class ScenarioError(ValueError):
    """The story names something that does not exist, or asks for something impossible."""


class NotAvailable(ScenarioError):
    """The action needs a power of the in-process stack that the run's target does not have."""

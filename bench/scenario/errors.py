"""How a scenario fails: every failure names the scenario, the step and the cause.

* :class:`ScenarioFailure` -- the story did not go as told: an expectation or a check that did not
  hold, a wait that timed out.  Raised by the scenario API; the runner adds the scenario name.
* :class:`ScenarioError` -- the story is written wrong: an unknown actor, event, stage or profile,
  a bad argument.  Also a failure of that scenario (never of the run).
* :class:`NotAvailable` -- an action whose machinery is not merged yet (link conditions, server
  restarts, external targets): the message says what is missing.  A :class:`ScenarioError`.
"""

from __future__ import annotations

__all__ = ["ScenarioFailure", "ScenarioError", "NotAvailable", "NEEDS_LINKS", "NEEDS_FAULTS", "NEEDS_TARGETS"]

NEEDS_LINKS = "needs link conditions (the network seam's latency/loss/partition/reset: not merged yet)"
NEEDS_FAULTS = "needs the server faults of the stack (restart comet or FreeSWITCH, slow CometQL: not merged yet)"
NEEDS_TARGETS = "needs external targets (not merged yet): only the in-process stack runs scenarios today"


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
    """The action needs machinery that is not in this build yet."""

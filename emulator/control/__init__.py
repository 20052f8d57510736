"""The control plane: a running emulator seen and steered over HTTP (``cometbench serve``, port 8088).

The layer above the stack (``emulator/stack.py``) and below the bench: it reads the stack's live
objects and calls its public hooks, and nothing below imports it.

* :mod:`emulator.control.server` -- the listener (quart-trio under hypercorn on the network seam);
* :mod:`emulator.control.app` -- the routes: live state, faults, resets, the journal, ``/metrics``,
  ``/openapi.json`` (the hand-written ``openapi.json`` beside this file) and ``/dashboard``
  (``dashboard.html``: one page, no external script, polling the API);
* :mod:`emulator.control.views` -- JSON views of tenants, users, connections, pipes, conferences;
* :mod:`emulator.control.faults` -- the fault and reset actions;
* :mod:`emulator.control.metrics` -- the Prometheus exposition and the server-side join histogram.
"""

"""Real browsers in the scenarios: Chromium (Playwright) in place of virtual actors.

``cometbench run SCENARIO --real-time --browser patient`` has a real Chromium play the patient: the
page is the demo app (fixtures/demo_app/: the comet leg written here, the call flow of
cometVideoApi.js, JsSIP from npm) or a user's own app (``--app PROFILE``, bench/browser/profile.py),
mixed with virtual actors in one call, driven through the same scenario API.

* ``participant.py`` -- :class:`BrowserParticipant` (the actor), :class:`BrowserEnvironment` (one
  scenario's browser, web server and backend), :class:`BrowserSettings`;
* ``host.py`` -- the Playwright thread, the trio bridge, launching and reaping Chromium;
* ``page.py`` -- one actor's browser context and page (init scripts, routes, dialogs, console,
  the page clock's calibration); ``probe.js`` -- what runs in the page (the createObjectURL shim,
  WebSocket redirects, observation of every stage);
* ``relay.py`` -- the per-actor relays that put a browser's connections on the network seam;
* ``server.py`` -- the demo app, users' folders and the demo-compatible backend (auth.php, call.php);
* ``profile.py`` -- app profiles (selectors, scripts, backend routes, comet nodes);
* ``media.py`` -- the generated fake camera (Y4M) and microphone (WAV);
* ``bundle.py`` -- JsSIP 2.0.6 as npm ships it, 3.x bundled for the page; ``procs.py`` -- process groups.

Playwright is the optional extra ``browser`` (``pip install 'cometbench[browser]'``; the test
extra includes it); Chromium is Debian's ``/usr/bin/chromium``, never downloaded.
"""

from bench.browser.host import BrowserCrashed, BrowserError, BrowserUnavailable
from bench.browser.participant import BrowserEnvironment, BrowserParticipant, BrowserSettings
from bench.browser.profile import AppProfile, ProfileError, load_profile

__all__ = ["BrowserSettings", "BrowserParticipant", "BrowserEnvironment", "BrowserError", "BrowserCrashed",
           "BrowserUnavailable", "AppProfile", "ProfileError", "load_profile"]

"""Actors: behaviours that combine the protocol clients of ``bench/clients`` into people and apps.

* ``backend.py`` -- the application backend (auth.php, call.php over CometQL) and the app-level
  call restore;
* ``participant.py`` -- a participant (doctor, patient): app + page (comet client, video client,
  JsSIP user agents) + the media model, with latency marks (docs/stages.md).
"""

"""Protocol clients that behave like the real ones, for the bench and the tests.

* ``comet.py`` -- CometServerApi.js 4.08 on the wire (comet WebSocket);
* ``video.py`` -- cometVideoApi.js 1.0, the call state machine on top of ``comet.py``;
* ``sip.py`` (sans-IO) and ``sip_ua.py`` (trio driver) -- a JsSIP 2.0.6-like user agent over SIP/WSS,
  the one SIP client of the project;
* ``webrtc.py`` -- the browser's share: device timings and Chrome-shaped SDP offers;
* ``cometql.py`` -- a CometQL (MySQL protocol) client on ``emulator/wire/mysql.py``;
* ``quirks.py`` -- the real client's known bugs as named, switchable client quirks.

ESL (FreeSWITCH's event socket) has one client in the project, ``emulator/freeswitch/esl_client.py``:
the emulated comet server's link to FreeSWITCH needs it, and the emulator cannot import the bench, so
the bench's operator commands (``s.faults.esl_kick`` ...) use that one too.
"""

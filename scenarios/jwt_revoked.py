"""The app revokes the patient's login token in the middle of the call.

Instead of a users_auth hash the app can give the page a JWT (HS256, secret = the server password
followed by the dev_id, claims ``user_id`` and ``exp``).  The comet server accepts it, stores a
hash of its own for the user, and sends that hash in ``serverInfo``: it becomes the page's
``real_user_key`` and so its SIP password.  Mid-call, the app writes the token into
``revoked_tokens`` (comet-ws-protocol.md 2.6):

* the comet server deletes the user's hash and closes **every** comet connection of the user; the
  page reconnects about a second later with the same token and is refused (``authorized: false``):
  it stays connected as an anonymous user, which may still use ``web_`` pipes, so the callPipe
  keeps working -- but the page can no longer be invited (``msg.sys_sipCall`` needs a login);
* the SIP side does not notice: the call, the FreeSWITCH member and the media go on;
* until the registration refresh (JsSIP re-registers every 597 s): the directory no longer knows
  the user, FreeSWITCH answers 403, and the page ends the call itself -- ``onCallEnd
  {status: registration-failure}`` and ``out``, so the doctor gets onOut.

It waits those ten simulated minutes, which cost about 4 s of a two-core machine's time (the
heartbeat of two pages), so it is not in the default pack: run it by name or with ``--all``.
"""

from bench.scenario import Scenario

NEEDS = ("freeswitch",)   # it looks inside FreeSWITCH: in-process only
ROOM = "108"
TIMEOUT = 900
DEFAULT = False          # ten simulated minutes: by name or with --all


async def story(s: Scenario) -> None:
    doctor, patient = s.doctor, s.patient

    with s.step("the app gives the patient's page a JWT; the doctor and the patient meet in room 108"):
        token = s.issue_jwt(patient, ttl=3600)
        await s.meet(ROOM, doctor, patient)
        s.check(patient.comet.authorized is True, "the page logged in with the JWT")

    with s.step("the app revokes the token mid-call: the page's comet connection is closed and refused"):
        s.this_step().expect_no("patient.onCallEnd", note="the call goes on")
        s.this_step().expect_no("doctor.onOut")
        before = len(patient.comet.attempts)
        await s.revoke_jwt(token)
        await s.sleep(10)
        s.check(len(patient.comet.attempts) > before, "the page reconnected")
        s.check(patient.comet.authorized is False, "and was refused: authorized false")
        s.check(patient.in_call and doctor.in_call, "both pages still in the call")
        s.check(patient.member().media == "flowing", "the patient's media still flows")
        s.check(sorted(await s.conference_members(ROOM)) == ["doctor", "patient"], "the room holds both")

    with s.step("the callPipe still works anonymously: the heartbeat goes on"):
        s.this_step().expect("doctor.received.ping", user_id=0, note="pings from the anonymous page")
        await s.sleep(5)

    with s.step("the registration refresh fails: the page ends the call"):
        end = await s.wait("patient.onCallEnd", within=600)
        s.check(end.data["status"] == "registration-failure", f"status {end.data['status']}")
        await s.wait("doctor.onOut", within=5)
        await s.wait("freeswitch.del-member", actor="patient", within=5)
        s.check(doctor.in_call and not patient.in_call, "the doctor alone in the call")

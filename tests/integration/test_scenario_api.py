"""The scenario API against the in-process stack: the timeline every side writes to, faults, metrics,
and every way a story can go wrong -- each failure names the scenario, the step and the cause, and a
run goes on with the next scenario."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import trio

from bench.metrics import Metrics
from bench.scenario import ScenarioSpec, load
from bench.scenario.errors import NotAvailable
from bench.scenario.runner import Run, RunSettings, run_one, tell


def spec_of(story, **settings) -> ScenarioSpec:
    return ScenarioSpec(story.__name__, Path(__file__), story=story, **settings)


async def test_every_side_writes_to_one_timeline(autojump_clock):
    seen = {}

    async def story(s):
        with s.step("meet"):
            await s.meet("101")
        with s.step("the patient mutes and hangs up"):
            s.patient.mute_audio(True)
            await s.sleep(1)
            s.patient.hangup()
            await s.wait("doctor.onOut")
            await s.wait("freeswitch.del-member")  # the BYE and the callPipe's out travel apart
        seen["names"] = s.timeline.names()
        seen["onOut"] = s.timeline.last("doctor.onOut")
        seen["actors"] = (s.doctor.display_name, s.patient.display_name, s.doctor.user_id, s.patient.user_id)
        seen["journal"] = s.stack.journal.entries(service="bench")

    result = await tell(spec_of(story), seed=4)
    assert result.passed and result.status == "passed" and result.failure is None, result.failure
    names = seen["names"]
    # callbacks (JavaScript names), marks, callPipe events, actions, FreeSWITCH events, steps
    assert {"doctor.onCall", "doctor.onCallStart", "patient.onCallStart", "doctor.onCallAccept", "patient.onCallEnd",
            "doctor.onOut", "patient.first_remote_frame", "doctor.join", "patient.mute_audio",
            "doctor.received.toggleMute", "doctor.received.out", "patient.hangup", "freeswitch.add-member",
            "freeswitch.del-member", "scenario.step"} <= names
    out = seen["onOut"]
    assert out.step == "the patient mutes and hangs up" and out.data["status"] == "hangup"
    assert out.data["user_id"] == seen["actors"][3] and out.data["room"] == "101"
    doctor_name, patient_name, doctor_id, patient_id = seen["actors"]
    assert doctor_name != patient_name and doctor_id != patient_id
    kinds = {e["kind"] for e in seen["journal"]}
    assert {"mark", "scenario", "step", "callback"} <= kinds
    callbacks = [json.loads(e["data"]) for e in seen["journal"] if e["kind"] == "callback"]
    assert {"actor": "doctor", "callback": "onOut", "scenario": "story", "action": "out", "user_id": patient_id,
            "status": "hangup", "room": "101"} in callbacks, callbacks
    assert result.events > 50 and result.expectations == 0


async def test_the_same_seed_names_the_same_people(autojump_clock):
    names = []

    async def story(s):
        names.append((s.doctor.display_name, s.patient.display_name, s.doctor.user_id))

    for seed in (7, 7, 8):
        assert (await tell(spec_of(story), seed=seed)).passed
    assert names[0] == names[1] and names[0] != names[2]


async def test_a_failed_expectation_names_the_scenario_the_step_and_the_expectation(autojump_clock):
    async def story(s):
        with s.step("meet"):
            await s.meet("101")
        with s.step("the patient reloads"):
            s.after("patient.refresh", within=10).expect("doctor.onOut", note="the doctor is told")
            s.this_step().expect_no("doctor.onCallEnd")
            await s.patient.refresh()

    result = await tell(spec_of(story))
    assert not result.passed and result.status == "failed"
    assert result.failure == ("story: expectation declared in step 'the patient reloads': doctor.onOut within 10 s "
                              "after patient.refresh (the doctor is told) -- seen 0 times")
    assert len(result.failures) == 1 and result.simulated_ms >= 10_000   # the window was waited out


async def test_a_story_that_raises(autojump_clock):
    async def story(s):
        with s.step("meet"):
            await s.meet("101")
        with s.step("a bug in the story"):
            {}["nope"]

    result = await tell(spec_of(story))
    assert result.step == "a bug in the story"
    assert result.failure.startswith("story: step 'a bug in the story': KeyError: 'nope' (at test_scenario_api.py "
                                     "line ")


async def test_a_story_that_times_out(autojump_clock):
    async def story(s):
        with s.step("waits for ever"):
            await trio.sleep_forever()

    result = await tell(spec_of(story, timeout=30))
    assert result.failure == f"story: step 'waits for ever': timed out after 30 s (TIMEOUT of {Path(__file__).name})"
    assert result.simulated_ms == pytest.approx(30_000, abs=1)


async def test_a_wait_that_times_out_says_what_it_waited_for(autojump_clock):
    async def story(s):
        with s.step("the doctor waits alone"):
            await s.doctor.open_page()
            await s.doctor.join("101")
            await s.wait("doctor.onCallStart", within=5)

    result = await tell(spec_of(story))
    assert result.failure == ("story: step 'the doctor waits alone': waited 5 s for doctor.onCallStart since the "
                              "step began: it did not happen")


@pytest.mark.parametrize("line, cause", [
    ("s.wait('nurse.onCallStart')", "unknown actor 'nurse' in 'nurse.onCallStart'; actors: doctor, patient"),
    ("s.expect('onCallStart')", "an event is named <who>.<what>"),
    ("s.patient.stage('join_totl')", "unknown stage 'join_totl'; stages: backend_invite"),
    ("s.measure('join_total', 'patient.join', 'patient.onCall')", "stage 'join_total' is one the actors measure"),
    ("s.actor('freeswitch')", "actor name 'freeswitch' must be an identifier other than"),
    ("s.link(s.patient).partition(-1)", "partition seconds must be a number of seconds >= 0, got -1"),
    ("s.link(s.patient, 'sip').lose_network(5)", "link(patient, 'sip').lose_network: a device loses its whole "
                                                 "network"),
    ("s.link(s.patient, 'ftp')", "unknown protocol 'ftp'; protocols: *, comet"),
    ("s.link(s.patient).loss(1.5)", "link(patient).loss: link loss is a probability 0..1"),
    ("s.link(s.patient).latency(-5)", "link(patient).latency: link rtt_ms must be >= 0, got -5"),
    ("s.link(s.patient).profile('moon')", "unknown network profile 'moon'"),
    ("s.faults.restart_comet(downtime=-1)", "downtime must be a number of seconds >= 0, got -1"),
    ("s.faults.slow_cometql('slow')", "the CometQL delay must be a number of seconds >= 0, got 'slow'"),
    ("s.faults.esl('conference list\\nexit')", "an ESL command is one non-empty line"),
    ("s.faults.esl_kick(s.patient, '101')", "patient has no member in the conference of room '101'"),
])
async def test_bad_names_and_unavailable_actions_fail_the_scenario_with_the_step(autojump_clock, line, cause):
    async def story(s):
        with s.step("a step that goes wrong"):
            value = eval(line, {"s": s})
            if hasattr(value, "__await__"):
                await value

    result = await tell(spec_of(story))
    assert not result.passed and result.step == "a step that goes wrong"
    assert result.failure.startswith("story: step 'a step that goes wrong': "), result.failure
    assert cause in result.failure, result.failure


async def test_an_unknown_event_in_an_expectation_is_reported_as_unknown(autojump_clock):
    async def story(s):
        with s.step("typo"):
            s.expect("patient.onCallStrat")

    result = await tell(spec_of(story))
    assert result.failure == ("story: expectation declared in step 'typo': patient.onCallStrat during the scenario -- "
                              "unknown event 'patient.onCallStrat': not a callback, mark, page event or action "
                              "of actor patient, and no s.mark('onCallStrat') happened")


async def test_unknown_fidelity_profile_and_bad_config(autojump_clock):
    async def story(s):
        pass

    result = await tell(spec_of(story, profiles=("cppcomet-4.09", "cppcomet-9")))
    assert result.failure.startswith("story: unknown fidelity profile 'cppcomet-9' (PROFILES of test_scenario_api.py)")
    result = await tell(spec_of(story), profile="strict")
    assert "unknown fidelity profile 'strict'" in result.failure
    result = await tell(spec_of(story, config={"rtp_timeout": "soon"}))
    assert result.failure == "story: CONFIG of test_scenario_api.py: rtp_timeout must be a number, got 'soon'"


async def test_esl_faults_marks_and_measures(autojump_clock):
    seen = {}

    async def story(s):
        await s.meet("101")
        member = s.patient.member()
        seen["mute"] = await s.faults.esl_mute(s.patient)
        seen["can_speak"] = member.can_speak
        seen["list"] = await s.faults.esl("conference list")
        s.mark("before_kick")
        await s.faults.esl_kick(s.patient)
        end = await s.wait("patient.onCallEnd")
        seen["status"] = end.data["status"]
        seen["ms"] = s.measure("kick_to_end", "scenario.before_kick", "patient.onCallEnd")
        s.expect("freeswitch.kick-member", actor="patient")
        s.expect("scenario.before_kick", count=1)

    metrics = Metrics()
    result = await tell(spec_of(story), metrics=metrics)
    assert result.passed, result.failure
    assert seen["mute"].strip().endswith("mute 2") and seen["can_speak"] is False
    assert "15*101-FSdefaultDomain" in seen["list"] and seen["status"] == "terminated"
    assert seen["ms"] >= 0 and metrics.summary()["kick_to_end"]["count"] == 1
    assert metrics.summary()["join_total"]["count"] == 2       # one join per side


async def test_join_at_an_intended_moment_counts_the_lateness(autojump_clock):
    """A click scheduled for t but run later is measured from t (no coordinated omission)."""
    seen = {}

    async def story(s):
        await s.together(s.doctor.open_page(), s.patient.open_page())
        moment = s.at(s.now + 1)
        await s.together(s.doctor.join("101", at=moment), s.patient.join("101", at=moment))
        await s.wait("patient.first_remote_frame")
        await s.wait("doctor.first_remote_frame")
        seen["start"] = s.patient.marks["backend_invite_start"] - moment
        late = s.at(s.now - 2)          # a click that should have happened two seconds ago
        s.patient.hangup()
        await s.sleep(1)
        await s.patient.join("101", at=late)
        await s.wait("patient.first_remote_frame", after="patient.join")
        seen["late_total"] = s.patient.stage("join_total")
        seen["joins"] = len(s.patient.joins)

    result = await tell(spec_of(story))
    assert result.passed, result.failure
    assert seen["start"] == 0 and seen["joins"] == 2
    assert seen["late_total"] >= 3000          # 2 s late + 1 s of sleeping + the join itself


def test_a_run_goes_on_after_broken_scenarios_and_writes_a_valid_report(tmp_path):
    import jsonschema

    from bench.report import schema

    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent('''
        """A good story."""
        async def story(s):
            with s.step("meet"):
                await s.meet("101")
    '''))
    broken = tmp_path / "broken.py"
    broken.write_text("async def story(s)\n    pass\n")
    storyless = tmp_path / "storyless.py"
    storyless.write_text("'''No story here.'''\nX = 1\n")
    raising = tmp_path / "raising.py"
    raising.write_text("import nonexistent_module_for_the_test\n")
    specs = [load(p) for p in (broken, good, storyless, raising, good)]
    assert specs[0].error.startswith(f"cannot load {broken}: SyntaxError") and "(line 1)" in specs[0].error
    assert specs[2].error == f"{storyless} defines no `async def story(s)`"
    assert specs[3].error.startswith(f"cannot load {raising}: ModuleNotFoundError")
    seen = []
    run = Run(specs, RunSettings(seed=3), tmp_path / "run", on_result=lambda i, n, r: seen.append((i, n, r.status)))
    assert run.execute() == "complete"
    assert seen == [(0, 5, "failed"), (1, 5, "passed"), (2, 5, "failed"), (3, 5, "failed"), (4, 5, "passed")]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert report["status"] == "complete" and report["seed"] == 3 and report["summary"]["failed"] == 3
    assert [s["name"] for s in report["scenarios"]] == ["broken", "good", "storyless", "raising", "good"]
    assert report["scenarios"][0]["failure"].startswith("broken: cannot load")
    assert report["scenarios"][4]["repetition"] == 0 and report["scenarios"][4]["passed"] is True
    assert report["stages"]["join_total"]["count"] == 4
    assert len(report["journal_sha256"]) == 64 and (tmp_path / "run" / "journal.sqlite").is_file()
    assert "Tag=stage=join_total;scenario=good;network=loopback," in (tmp_path / "run" / "histograms.hlog").read_text()
    assert report["by_scenario"]["good"]["runs"] == 2 and report["by_scenario"]["good"]["passed"] == 2


def test_repetitions_use_derived_seeds(tmp_path):
    story_file = tmp_path / "two.py"
    story_file.write_text("async def story(s):\n    await s.meet('101')\n")
    run = Run([load(story_file)], RunSettings(seed=5, repeat=3), tmp_path / "run")
    run.execute()
    seeds = [r.seed for r in run.results]
    assert seeds[0] == 5 and len(set(seeds)) == 3 and [r.repetition for r in run.results] == [0, 1, 2]
    assert run.metrics.summary()["join_total"]["count"] == 6


def test_the_readme_scenario_runs():
    """README's "Writing a scenario" example is a story that passes."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Writing a scenario"):readme.index("* **actors**")]
    lines = [line[4:] for line in section.splitlines() if line.startswith("    ") or not line.strip()]
    code = "\n".join(lines).strip() + "\n"
    assert code.startswith("from bench.scenario import Scenario")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "readme_story.py"
        path.write_text(code)
        result = run_one(load(path), seed=1)
    assert result.passed, result.failure


def test_not_available_is_a_scenario_error():
    from bench.scenario.errors import ScenarioError

    assert issubclass(NotAvailable, ScenarioError)


def test_a_crash_of_the_bench_still_leaves_a_report_of_what_did_not_finish(tmp_path, monkeypatch):
    import bench.scenario.runner as runner

    story_file = tmp_path / "two.py"
    story_file.write_text("async def story(s):\n    await s.meet('101')\n")
    real_run_one, calls = runner.run_one, []

    def flaky(spec, **kwargs):
        calls.append(spec.name)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_run_one(spec, **kwargs)

    monkeypatch.setattr(runner, "run_one", flaky)
    run = Run([load(story_file)], RunSettings(repeat=3), tmp_path / "run")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run.execute()
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["interruption"] == "crash: RuntimeError: disk on fire"
    assert [s["status"] for s in report["scenarios"]] == ["passed", "interrupted", "not_run"]
    assert report["scenarios"][1]["failure"] == "two: not finished: the run crashed (RuntimeError: disk on fire)"
    assert report["journal_sha256"] is not None and report["finished"] is not None


async def test_an_unknown_network_profile_fails_the_scenario_before_it_starts(autojump_clock):
    async def story(s):
        raise AssertionError("never told")

    result = await tell(spec_of(story), network="5g")
    assert result.failure.startswith("story: --network: unknown network profile '5g'; known: loopback"), result.failure
    assert result.events == 0


async def test_the_run_network_puts_each_actors_profile_on_its_links(autojump_clock):
    """``--network 4g,patient=3g``: each actor's joins are as slow as its own profile, every protocol
    of it is conditioned (the stack's link table says so), and the histograms keep the profiles apart."""
    seen = {}

    async def story(s):
        await s.meet("101")
        nurse = s.actor("nurse")
        await nurse.open_page()
        await nurse.join("101")
        await s.wait("nurse.first_remote_frame", within=60)
        seen["links"] = {name: (s.stack.links.link(name, "sip").rtt_ms, s.stack.links.link(name, "media").rtt_ms)
                         for name in ("doctor", "patient", "nurse", "backend")}
        seen["rtt"] = {name: actor.participant.app_request_rtt for name, actor in s.actors.items()}
        seen["join"] = {name: actor.stage("join_total") for name, actor in s.actors.items()}

    metrics = Metrics()
    result = await tell(spec_of(story), network="4g,patient=3g", metrics=metrics)
    assert result.passed, result.failure
    assert result.network == "4g,patient=3g"
    assert seen["links"] == {"doctor": (80.0, 80.0), "patient": (250.0, 250.0), "nurse": (80.0, 80.0),
                             "backend": (0.0, 0.0)}        # the app backend sits in the data centre
    assert seen["rtt"] == {"doctor": 0.08, "patient": 0.25, "nurse": 0.08}
    assert all(3000 <= ms <= 15000 for ms in seen["join"].values()), seen["join"]     # the seed's band
    by_network = {key.network for key in metrics.histograms if key.stage == "join_total"}
    assert by_network == {"4g", "3g"}
    assert metrics.summary(network="3g")["join_total"]["count"] == 1
    assert metrics.summary(network="4g")["join_total"]["count"] == 2

    loopback = Metrics()
    assert (await tell(spec_of(story), network="loopback", metrics=loopback)).passed
    assert loopback.summary()["join_total"]["max"] < 1000 < metrics.summary()["join_total"]["min"]


async def test_a_network_spec_naming_an_actor_the_story_lacks_fails_it(autojump_clock):
    async def story(s):
        await s.meet("101")

    result = await tell(spec_of(story), network="loopback,nurse=3g")
    assert not result.passed
    assert result.failure == ("story: --network names actor(s) nurse, which this story does not have "
                              "(its actors: doctor, patient)")


async def test_fault_and_link_actions_reach_the_stack_and_the_timeline(autojump_clock):
    """Every action of s.faults and s.link(actor) works on the stack's own controls and goes on the
    timeline, so windows can be scoped by it -- a scheduled heal included."""
    seen = {}

    async def story(s):
        doctor, patient = s.doctor, s.patient
        await s.meet("101")
        with s.step("link actions"):
            s.link(patient).partition(5)
            seen["partitioned"] = s.stack.links.partitioned("patient", "sip")
            await s.wait("link.heal", within=6)
            seen["healed_after"] = s.timeline.last("link.heal").t - s.timeline.last("link.partition").t
            seen["reset"] = s.link(patient, "sip").reset()
            s.link(doctor).profile("3g")
            s.link(doctor, "media").latency(300, jitter_ms=10)
            s.link(doctor).loss(0.02)
            seen["links"] = (s.stack.links.link("doctor", "comet").rtt_ms, s.stack.links.link("doctor", "media"),
                             s.stack.links.link("doctor", "comet").loss)
            s.link(doctor).clear()
            s.link(doctor, "media").clear()
            seen["cleared"] = s.stack.links.link("doctor", "comet").clean
            seen["half_open"] = s.link(doctor, "cometql").half_open()
        with s.step("a slow CometQL"):
            s.faults.slow_cometql(0.5)
            rows = await s.conference_members("101")
            seen["slow"] = s.stack.faults.cometql_delay
            s.faults.clear_slow_cometql()
            seen["rows"] = rows
        with s.step("the comet server restarts"):
            await s.faults.restart_comet(downtime=2)
            await s.wait("patient.comet_open", within=5)
        seen["names"] = [h.name for h in s.timeline if h.who in ("link", "fault")]
        seen["reset_event"] = s.timeline.last("link.reset").data

    result = await tell(spec_of(story))
    assert result.passed, result.failure
    assert seen["partitioned"] and seen["healed_after"] == pytest.approx(5)
    assert seen["reset"] == 1 and seen["reset_event"] == {"protocol": "sip", "actor": "patient", "connections": 1}
    assert seen["links"][0] == 250.0 and seen["links"][1].rtt_ms == 300 and seen["links"][1].jitter_ms == 10
    assert seen["links"][2] == 0.02 and seen["cleared"]
    assert seen["half_open"] == 0                       # the app backend, not the doctor, speaks CometQL
    assert seen["slow"] == 0.5 and sorted(seen["rows"]) == ["doctor", "patient"]
    assert seen["names"] == ["link.partition", "link.heal", "link.reset", "link.set", "link.set", "link.set",
                             "link.set", "link.set", "link.half_open", "fault.slow_cometql", "fault.slow_cometql",
                             "fault.restart_comet", "fault.comet_up"]


async def test_a_lost_network_is_seen_by_the_page_and_ends_when_it_is_back(autojump_clock):
    seen = {}

    async def story(s):
        await s.meet("101")
        with s.step("the patient's network goes for 10 s"):
            s.between("link.offline", "link.online").expect("patient.comet_close", count=1, code=1006)
            s.between("link.offline", "link.online").expect_no("patient.comet_open")
            seen["connections"] = s.link(s.patient).lose_network(10)
            seen["offline"] = (s.stack.links.offline("patient"), s.patient.comet.online)
            await s.wait("patient.go_online", within=11)
            await s.wait("patient.comet_open", within=2)
        seen["order"] = [h.name for h in s.timeline if h.name in (
            "patient.go_offline", "link.offline", "link.partition", "link.heal", "link.online", "patient.go_online")]

    result = await tell(spec_of(story))
    assert result.passed, result.failure
    assert seen["connections"] == 2                 # the comet WebSocket and the SIP WebSocket
    assert seen["offline"] == (True, False)
    assert seen["order"] == ["patient.go_offline", "link.offline", "link.partition", "link.heal", "link.online",
                             "patient.go_online"]

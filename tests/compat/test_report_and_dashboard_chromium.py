"""The HTML report and the live dashboard in a real browser: Debian's Chromium driven by Playwright.

* :func:`test_the_report_opens_with_no_network_and_shows_the_figures` -- a run's report.html opened
  from disk with every network request aborted (``page.route``): no request is even attempted, the
  percentile table shows report.json's figures, the cumulative chart and the sequence diagrams are
  drawn (non-zero size).
* :func:`test_the_dashboard_shows_a_join_a_mute_and_a_fault_taking_effect` -- ``cometbench serve``'s
  control plane (in process, OS sockets, real time) with a doctor and a patient joining room 101
  while the dashboard is open: both members appear without a reload, an operator's mute shows on
  the patient's row, and the dashboard's *kick* button removes the patient from the conference
  (the stack has one member left and the patient's page gets onCallEnd).

Screenshots of both go to ``<tmp>/screenshots/`` (the path is printed; ``pytest -s`` shows it);
docs/images/ has one of each from such a run.  Playwright runs in a worker thread (its sync API),
the emulator on trio's thread, as in test_jssip_chromium.py.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import trio

from bench.browser.host import CHROMIUM
from bench.cli import start_control
from emulator.net.network import OSNetwork
from tests.actorkit import CONF, PATIENT, doctor_and_patient, in_call, members_of, stack_and_target, until
from tests.compat.conftest import playwright_available, require_tool
from tests.compat.test_jssip_chromium import CHROMIUM_ARGS
from tests.integration.test_cli_run import CLI, ROOT

pytestmark = pytest.mark.compat

TOKEN = "dashboard-test-token"
WAIT_MS = 20_000


@pytest.fixture
def browser() -> None:
    require_tool("chromium (Debian package)", lambda: shutil.which(CHROMIUM) is not None, "apt-get install chromium")
    require_tool("python playwright", playwright_available, "pip install -e '.[test]'")


def screenshots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=WAIT_MS)


def test_the_report_opens_with_no_network_and_shows_the_figures(browser, tmp_path):
    import subprocess

    from playwright.sync_api import sync_playwright

    out = tmp_path / "run"
    done = subprocess.run([*CLI, "run", "two_party_call", "three_party_floor", "--report-dir", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    join = report["stages"]["join_total"]
    attempted: list[str] = []
    shots = screenshots(tmp_path)
    with sync_playwright() as p:
        b = launch(p)
        try:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)

            def block(route) -> None:
                if route.request.url.startswith("file://") and route.request.resource_type == "document":
                    route.continue_()
                else:
                    attempted.append(route.request.url)
                    route.abort()

            page.route("**/*", block)
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto((out / "report.html").as_uri())
            cell = page.locator('tr[data-stage="join_total"] td[data-stat="p50"]')
            assert cell.inner_text() == f"{join['p50']:,.1f}"
            assert page.locator('tr[data-stage="join_total"] td[data-stat="count"]').inner_text() == str(join["count"])
            assert page.locator('tr[data-stage="join_total"] td[data-stat="p99"]').inner_text() == f"{join['p99']:,.1f}"
            assert page.locator('[data-join="p50"]').inner_text() == f"{join['p50']:,.1f} ms"
            assert page.locator('[data-fact="seed"]').inner_text() == "0"
            assert page.locator('[data-fact="network profiles"]').inner_text() == "loopback"
            box = page.locator("#cdf-join-total").bounding_box()
            assert box and box["width"] > 400 and box["height"] > 200
            assert page.locator("svg.sequence").count() == 2
            first = page.locator("details.call").first.locator("svg.sequence").bounding_box()
            assert first and first["height"] > 300
            lanes = (page.locator("details.call").first.locator("svg.sequence text[font-weight='600']")
                     .all_text_contents())
            assert lanes[:2] == ["app backend", "comet server"] and lanes[-1] == "FreeSWITCH"
            assert "doctor (browser)" in lanes and "patient (browser)" in lanes
            assert page.locator("#banner-ok").is_visible()
            page.screenshot(path=str(shots / "report.png"), full_page=False)
            page.locator("#calls").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "report-sequence.png"), full_page=False)
        finally:
            b.close()
    assert attempted == [] and failed == []
    print(f"screenshots: {shots}")


def drive_dashboard(url: str, shots: Path, joined: threading.Event, muted: threading.Event) -> dict:
    """Only locator waits (no page-side eval): the dashboard's Content-Security-Policy forbids eval,
    and the test keeps it in force."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        try:
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            external: list[str] = []
            page.on("request", lambda r: external.append(r.url) if not r.url.startswith(url.split("/dashboard")[0])
                    else None)
            page.goto(url)
            rows = page.locator("[data-member]")
            expect(rows).to_have_count(2, timeout=WAIT_MS)
            users = sorted(rows.nth(i).get_attribute("data-user") for i in range(2))
            page.screenshot(path=str(shots / "dashboard-join.png"))
            joined.set()
            page.wait_for_selector(f'[data-member][data-user="{PATIENT}"][data-muted="true"]')
            flags = page.locator(f'[data-member][data-user="{PATIENT}"] .flag.muted').inner_text()
            muted_count = page.locator("#n-muted").inner_text()
            page.screenshot(path=str(shots / "dashboard-mute.png"))
            muted.set()
            page.locator(f'[data-member][data-user="{PATIENT}"] button[data-action="kick"]').click()
            expect(page.locator("[data-member]")).to_have_count(1, timeout=WAIT_MS)
            page.wait_for_selector('#faults tr[data-fault="kick"]')
            tail = page.locator("#tail").inner_text()
            page.screenshot(path=str(shots / "dashboard-fault.png"))
            return {"users": users, "flags": flags, "muted_count": muted_count, "tail": tail, "errors": errors,
                    "external": external}
        finally:
            b.close()


async def wait_for(event: threading.Event, timeout: float = 40) -> None:
    with trio.fail_after(timeout):
        while not event.is_set():
            await trio.sleep(0.05)


async def test_the_dashboard_shows_a_join_a_mute_and_a_fault_taking_effect(browser, tmp_path):
    network = OSNetwork()
    shots = screenshots(tmp_path)
    joined, muted = threading.Event(), threading.Event()
    result: dict = {}
    async with stack_and_target(network, control_token=TOKEN) as (stack, target):
        control = await start_control(stack)
        url = f"http://127.0.0.1:{control.port}/dashboard#token={TOKEN}"
        async with doctor_and_patient(target, network) as (doctor, patient):
            async with trio.open_nursery() as nursery:
                async def browse() -> None:
                    result.update(await trio.to_thread.run_sync(drive_dashboard, url, shots, joined, muted))

                nursery.start_soon(browse)
                await trio.sleep(0.5)                  # the page is open before anyone joins
                await in_call(doctor, patient)
                await wait_for(joined)
                (member,) = members_of(stack, PATIENT)
                stack.bridge.api(f"conference {CONF} mute {member.id}")    # an operator's ESL mute
                await wait_for(muted)
            # the dashboard's kick button took effect on the emulator and on the patient's page
            await until(lambda: len(members_of(stack)) == 1)
            assert members_of(stack, PATIENT) == []
            await patient.wait_mark("call_end", timeout=10)
    assert result["users"] == sorted([str(u) for u in (501, 502)])
    assert result["flags"] == "muted" and result["muted_count"] == "1"
    assert "freeswitch mute-member" in result["tail"] or "control fault" in result["tail"]
    assert result["errors"] == [] and result["external"] == []
    assert [f["fault"] for f in control.control.actions.history] == ["kick"]
    print(f"screenshots: {shots}")

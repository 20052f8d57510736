"""junit.xml: the run for CI systems that read JUnit XML (GitLab, Jenkins, GitHub test reporters).

One ``<testsuite name="cometbench">`` with one ``<testcase>`` per scenario run (``classname``
``cometbench.<scenario>``, ``name`` the scenario and its repetition, ``time`` its wall time in
seconds), a ``<failure>`` whose ``message`` is the scenario's first failure and whose text lists
them all, ``<skipped>`` for runs that never ran.  With thresholds, a second suite
``cometbench.thresholds`` has one test case per limit, failed when the limit was breached.  The
run's seed, clock, network and journal digest are ``<properties>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["junit_xml", "write_junit"]


def _case_name(s: dict) -> str:
    rep = s.get("repetition") or 0
    return s["name"] + (f" #{rep + 1}" if rep else "")


def junit_xml(report: dict, thresholds: dict | None = None) -> bytes:
    root = ET.Element("testsuites", name="cometbench")
    scenarios = report["scenarios"]
    failures = sum(1 for s in scenarios if s.get("status") == "failed")
    errors = sum(1 for s in scenarios if s.get("status") == "interrupted")
    skipped = sum(1 for s in scenarios if s.get("status") in ("not_run", "running", "skipped"))
    suite = ET.SubElement(root, "testsuite", name="cometbench", tests=str(len(scenarios)), failures=str(failures),
                          errors=str(errors), skipped=str(skipped),
                          time=f"{sum(s.get('duration_ms', 0) for s in scenarios) / 1000:.3f}",
                          timestamp=str(report.get("started") or ""))
    props = ET.SubElement(suite, "properties")
    for key in ("seed", "clock", "network", "target", "repeat", "status", "journal_sha256"):
        ET.SubElement(props, "property", name=key, value=str(report.get(key)))
    ET.SubElement(props, "property", name="profiles", value=",".join(report.get("profiles", [])))
    for s in scenarios:
        case = ET.SubElement(suite, "testcase", classname=f"cometbench.{s['name']}", name=_case_name(s),
                             time=f"{s.get('duration_ms', 0) / 1000:.3f}")
        status = s.get("status")
        if status in ("failed", "interrupted"):
            tag = "failure" if status == "failed" else "error"
            element = ET.SubElement(case, tag, message=s.get("failure") or status,
                                    type="ScenarioFailure" if status == "failed" else "Interrupted")
            lines = list(s.get("failures") or [s.get("failure") or status])
            if s.get("step"):
                lines.append(f"step: {s['step']}")
            lines.append(f"seed {s.get('seed')}, journal run {s.get('journal_run')}")
            element.text = "\n".join(lines)
        elif status in ("not_run", "running"):
            ET.SubElement(case, "skipped", message=s.get("failure") or "not run")
        elif status == "skipped":     # it needs what the --target does not have
            ET.SubElement(case, "skipped", message=s.get("skipped") or "skipped")
        out = ET.SubElement(case, "system-out")
        out.text = (f"seed={s.get('seed')} profile={s.get('profile')} network={s.get('network')} "
                    f"journal_run={s.get('journal_run')} simulated_ms={s.get('simulated_ms')} "
                    f"join_total_ms={s.get('join_total_ms')}")
    if thresholds:
        limits = thresholds["limits"]
        tsuite = ET.SubElement(root, "testsuite", name="cometbench.thresholds", tests=str(len(limits)),
                               failures=str(sum(1 for v in limits if not v["passed"])), errors="0", skipped="0",
                               time="0")
        ET.SubElement(ET.SubElement(tsuite, "properties"), "property", name="file", value=thresholds["file"])
        for v in limits:
            case = ET.SubElement(tsuite, "testcase", classname="cometbench.thresholds", name=v["limit"], time="0")
            if not v["passed"]:
                ET.SubElement(case, "failure", message=v["message"], type="ThresholdBreached").text = v["message"]
            else:
                ET.SubElement(case, "system-out").text = v["message"]
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: str | Path, report: dict, thresholds: dict | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(junit_xml(report, thresholds))
    tmp.replace(path)

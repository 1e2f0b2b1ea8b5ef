# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run report: one self-contained HTML page for a capture run, on the controller.

Input is a run directory `<dest>/<run_id>/` as trace_capture leaves it: manifest.json
and one directory per host. Output is `<run_dir>/report.html`: inline CSS and SVG, no
script, a content security policy that loads nothing. Per host and capture: kernel,
trace clock, instance, window, events, loss per CPU, bytes, files (checked against
their sha256), the clock anchor and its uncertainty; the event counts by name and a
histogram of events over time, both read from each trace.dat by the independent
reader in _tracedat_reader, with rows aligned on the hosts' wall clocks when every
row has an anchor (_clock_anchor); the hosts that failed or were unreachable (the
manifest's `failed` map, from run_failures), a row each and a problem each; a link to
the run's Perfetto archive and the trace-cmd command that merges the run's trace.dat
files.

Everything from the manifest and the hosts is untrusted: the manifest goes through
_host_result's schema first (a field that fails it is left out and named among the
report's problems), text is escaped where it lands (_escape, shared with the audit's
writers), and a file path is only linked when it stays inside the run directory. The page holds
no clock time of its own, so the same run gives the same bytes and writing it again
changes nothing.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shlex
import urllib.parse
from typing import Any

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import (
    _clock_anchor,
    _escape,
    _perfetto_archive,
    _run_dir,
    _runs,
)
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import (
    NS_CLOCKS,
    TraceDat,
    TraceDatError,
)

REPORT_NAME = _runs.REPORT
MANIFEST = _runs.MANIFEST
DEFAULT_AUDIT = os.path.join(_runs.AUDIT_DIR, _runs.AUDIT_FILES["json"])
BUCKETS = 60
NS_PER_S = 1_000_000_000

# Timeline geometry (SVG user units).
SVG_WIDTH = 960
LABEL_WIDTH = 230
RIGHT_MARGIN = 80
ROW_HEIGHT = 34
BAR_HEIGHT = 26
AXIS_HEIGHT = 34

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
margin:1.5rem auto;max-width:75rem;padding:0 1rem;color:#1d2330;background:#fff;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.4rem 0}
th,td{border:1px solid #d5d9e0;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;margin-top:0}.totals{display:flex;gap:1.5rem;flex-wrap:wrap;padding:0;list-style:none}
.totals li{background:#f1f3f6;border-radius:.3rem;padding:.3rem .7rem}
.cpu{display:inline-block;margin:0 .35rem .1rem 0;padding:0 .3rem;border-radius:.2rem;background:#eef6ee}
.loss{background:#fde2e1;color:#8a1c1c;font-weight:600}
.warn{color:#8a5a00}.ok{color:#1d6b2c}.bad{color:#8a1c1c;font-weight:600}.muted{color:#667}
.sha{word-break:break-all}
.bar{display:inline-block;height:.7rem;background:#5b7bd5;vertical-align:middle}
figure{margin:0}figcaption{font-size:.85rem;color:#444;margin-top:.3rem}
svg{max-width:100%;height:auto}svg text{font-family:system-ui,sans-serif;font-size:12px;fill:#1d2330}
svg .lane{fill:#f4f6f9}svg .hbar{fill:#5b7bd5}svg .tick{stroke:#c3c8d2}svg .axis{stroke:#667}
svg .small{font-size:10px;fill:#556}svg .note{fill:#8a1c1c}
"""


# The run directory or its manifest cannot be reported on; nothing was written.
RunReportError = _run_dir.RunDirError


def h(value) -> str:
    return _escape.html(value)


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def human_bytes(value) -> str:
    count = _int(value)
    if count is None:
        return "-"
    if count < 1024:
        return "%d B" % count
    size = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return "%.1f %s" % (size, unit)


def _cpu_order(item: tuple) -> tuple:
    """Sort key for {cpu: value} items whose keys should be CPU numbers."""
    try:
        return (0, int(item[0]), "")
    except (TypeError, ValueError):
        return (1, 0, str(item[0]))


def href(relative: str) -> str:
    return h(urllib.parse.quote(relative, safe="/"))


# ---------------------------------------------------------------- the model


def _capture_model(run_dir: str, capture: dict) -> dict:
    files: list[dict[str, Any]] = []
    for entry in _list(capture.get("files")):
        entry = _dict(entry)
        relative = entry.get("path")
        path = _run_dir.file_in_run(run_dir, relative)
        status, words = _run_dir.check_file(path, entry.get("bytes"), entry.get("sha256"))
        files.append(
            dict(
                path=relative if isinstance(relative, str) else repr(relative),
                link=path is not None and os.path.isfile(path),
                local=path,
                bytes=entry.get("bytes"),
                sha256=entry.get("sha256"),
                status=status,
                check=words,
            )
        )
    fmt = capture.get("format")
    model: dict[str, Any] = dict(
        name=capture.get("name"),
        format=fmt,
        instance=capture.get("instance"),
        trace_clock=capture.get("trace_clock"),
        started=capture.get("started"),
        start_at=capture.get("start_at"),
        late=capture.get("late") is True,
        start_delay=_number(capture.get("start_delay")),
        seconds=_number(capture.get("seconds")),
        events=_int(capture.get("events")),
        events_per_cpu=_dict(capture.get("events_per_cpu")),
        lost_events=capture.get("lost_events"),
        enabled_events=[str(name) for name in _list(capture.get("enabled_events"))],
        compress=capture.get("compress"),
        transferred_bytes=capture.get("transferred_bytes"),
        stored_bytes=sum(_int(entry["bytes"]) or 0 for entry in files) if files else None,
        command=_dict(capture.get("command")) or None,
        files=files,
        dat=None,
        dat_path=None,
        dat_error=None,
        dat_clock=None,
        dat_date=False,
        histogram=None,
        range=(None, None),
        anchor=_clock_anchor.from_manifest(capture.get("clock_anchor")),
    )
    if fmt == "dat":
        readable = [entry for entry in files if entry["path"].endswith(".dat")]
        if not readable:
            model["dat_error"] = "no .dat file in the manifest's file list"
        elif not readable[0]["link"]:
            # Missing, or outside the run directory: the file problem is reported already.
            model["dat_error"] = "%s: %s" % (readable[0]["path"], readable[0]["check"])
        else:
            model["dat_path"] = readable[0]["local"]
            model["files_dat"] = readable[0]["path"]
            try:
                with TraceDat(model["dat_path"]) as dat:
                    model["range"] = dat.time_range()
                    model["dat_clock"] = dat.trace_clock
                    model["dat_date"] = bool(dat.date)
                    if model["anchor"] is None:
                        model["anchor"] = _clock_anchor.from_date_option(dat.date, model["range"][0] or 0)
            except (TraceDatError, OSError) as exc:
                model["dat_error"] = _run_dir.relative_message(run_dir, exc)
                model["dat_path"] = None
    return model


def _origins(models: list[dict]) -> dict:
    """Where each row starts, in its own trace clock (ns), so that rows line up on the
    hosts' wall clocks: possible when every row is on a nanosecond clock and has a
    clock anchor (_clock_anchor: the manifest's, in nanoseconds or seconds, or the
    trace.dat's DATE option). Time 0 is the earliest window start. Returns {}
    otherwise (rows then start at their first event)."""
    rows = [capture for capture in models if capture["dat_path"]]
    if not rows or not all(_clock_in_ns(row) and row["anchor"] for row in rows):
        return {}
    wall0 = min(row["anchor"].wall_ns for row in rows)
    return {id(row): row["anchor"].trace_ns - (row["anchor"].wall_ns - wall0) for row in rows}


def _clock_in_ns(capture: dict) -> bool:
    clock = capture.get("dat_clock") or capture.get("trace_clock")
    return isinstance(clock, str) and clock in NS_CLOCKS


def _scan_histograms(run_dir: str, models: list[dict], buckets: int) -> dict:
    """Fill each readable dat capture's summary and histogram; returns the shared axis.

    Clocks differ between hosts and cannot be lined up, so each row starts at its own
    first event. Rows on nanosecond clocks share one axis in seconds, as long as the
    longest window (or span of events); other clocks get their own span.
    """
    axis_ns = 1
    ns_rows = 0
    origins = _origins(models)
    for capture in models:
        first, last = capture["range"]
        if capture["dat_path"] and first is not None and _clock_in_ns(capture):
            start = origins.get(id(capture), first)
            window = int((capture["seconds"] or 0) * NS_PER_S) + (first - start if origins else 0)
            axis_ns = max(axis_ns, window, last - start + 1)
            ns_rows += 1
    for capture in models:
        if not capture["dat_path"]:
            continue
        first, last = capture["range"]
        if first is not None:
            first = origins.get(id(capture), first)
        if first is None:
            span = axis_ns
        else:
            span = axis_ns if _clock_in_ns(capture) else last - first + 1
        try:
            with TraceDat(capture["dat_path"]) as dat:
                capture["dat"] = dat.scan(origin=first, span=span, buckets=buckets) if first is not None else dat.scan()
        except (TraceDatError, OSError) as exc:
            capture["dat_error"] = _run_dir.relative_message(run_dir, exc)
            continue
        capture["histogram"] = capture["dat"].pop("histogram", None) or dict(
            origin=None, span=span, counts=[0] * buckets, before_origin=0, after_span=0
        )
    return {"ns": axis_ns, "ns_rows": ns_rows, "wall_aligned": bool(origins)}


def build_model(run_dir: str, manifest: dict, buckets: int = BUCKETS, left_out: list[str] | None = None) -> dict:
    """The report's model of the run; `left_out`: what loading the manifest left out
    (load_manifest's problems), listed first among the problems."""
    manifest, problems = _run_dir.checked_manifest(manifest)
    problems[:0] = left_out or []
    hosts: list[dict[str, Any]] = []
    for name, record in sorted(_dict(manifest.get("hosts")).items(), key=lambda item: str(item[0])):
        record = _dict(record)
        captures = [_capture_model(run_dir, _dict(capture)) for capture in _list(record.get("captures"))]
        hosts.append(dict(name=str(name), kernel=record.get("kernel"), captures=captures, failure=None))
    captured = len(hosts)
    # The hosts that failed or were unreachable (run_failures): a row each, beside their
    # captures when they failed after one.
    by_name = {host["name"]: host for host in hosts}
    for name, failure in sorted(_dict(manifest.get("failed")).items(), key=lambda item: str(item[0])):
        host = by_name.get(str(name))
        if host is None:
            host = by_name[str(name)] = dict(name=str(name), kernel=None, captures=[], failure=None)
            hosts.append(host)
        failure = host["failure"] = _dict(failure)
        failure.setdefault("reason", "no reason recorded")
        problems.append(
            "%s: %s: %s"
            % (host["name"], "unreachable" if failure.get("unreachable") else "failed", _escape.line(failure["reason"]))
        )
    hosts.sort(key=lambda host: host["name"])
    every = [capture for host in hosts for capture in host["captures"]]
    axis = _scan_histograms(run_dir, every, buckets)
    events = lost = 0
    for host in hosts:
        for capture in host["captures"]:
            label = "%s / %s" % (host["name"], capture["name"])
            for entry in capture["files"]:
                if entry["status"] == "bad":
                    problems.append("%s: %s: %s" % (label, entry["path"], entry["check"]))
            if capture["dat_error"]:
                problems.append("%s: trace.dat not read: %s" % (label, capture["dat_error"]))
            if capture["late"]:
                problems.append(
                    "%s: armed after the shared window's start (%s): it opened %s s late, at %s"
                    % (label, capture["start_at"], _seconds_text(capture["start_delay"]), capture["started"])
                )
            dat = capture["dat"]
            if dat is not None and capture["events"] is not None and dat["events"] != capture["events"]:
                problems.append(
                    "%s: the manifest counts %d events, the trace.dat holds %d"
                    % (label, capture["events"], dat["events"])
                )
            count = capture["events"] if capture["events"] is not None else (dat or {}).get("events")
            events += count or 0
            lost += sum(_int(value) or 0 for value in _dict(capture["lost_events"]).values())
    archive = _run_dir.file_in_run(run_dir, _perfetto_archive.ARCHIVE)
    return dict(
        run_id=manifest.get("run_id"),
        created=manifest.get("created"),
        updated=manifest.get("updated"),
        hosts=hosts,
        captured_hosts=captured,
        failed_hosts=sum(1 for host in hosts if host["failure"] is not None),
        axis=axis,
        perfetto=_perfetto_archive.ARCHIVE if archive and os.path.isfile(archive) else None,
        merge=merge_command(every),
        buckets=buckets,
        problems=problems,
        events=events,
        lost=lost,
        captures=len(every),
    )


def merge_command(captures: list[dict]) -> dict | None:
    """`trace-cmd report -i A -i B ...` over the run's readable trace.dat files (paths
    relative to the run directory), which trace-cmd merges by timestamp, and whether
    every one of them carries a DATE option (which trace-cmd applies, putting them on
    the wall clock; without it each file keeps its host's trace clock)."""
    paths = [capture["files_dat"] for capture in captures if capture.get("files_dat") and capture["dat"] is not None]
    if not paths:
        return None
    return dict(
        command="trace-cmd report " + " ".join("-i " + shlex.quote(path) for path in paths),
        dated=all(capture["dat_date"] for capture in captures if capture.get("files_dat") and capture["dat"]),
        files=len(paths),
    )


def audit_summary(run_dir: str, audit_path: str | None) -> dict | None:
    """What a compliance JSON (tracefleet.ftrace.audit_report) says, to show and link."""
    explicit = audit_path is not None
    path: str = audit_path if audit_path is not None else os.path.join(run_dir, DEFAULT_AUDIT)
    if not os.path.isfile(path):
        return dict(path=path, error="not found") if explicit else None
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(run_dir))
    link = relative if _run_dir.file_in_run(run_dir, relative) else None
    result: dict[str, Any] = dict(path=path, link=link, error=None, html_link=None)
    if link:
        sibling = os.path.join(os.path.dirname(link), "compliance.html")
        if _run_dir.file_in_run(run_dir, sibling) and os.path.isfile(os.path.join(run_dir, sibling)):
            result["html_link"] = sibling
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        result["error"] = "not readable as JSON: %s" % exc
        return result
    summary = _dict(_dict(report).get("summary"))
    if not summary:
        result["error"] = "no summary in it (not a compliance report from audit_report?)"
        return result
    result.update(
        hosts=summary.get("hosts"),
        compliant=[str(host) for host in _list(summary.get("compliant"))],
        violating={
            str(host): [str(check) for check in _list(checks)]
            for host, checks in _dict(summary.get("violating")).items()
        },
        no_result=[str(host) for host in _list(summary.get("no_result"))],
        checks=_dict(summary.get("checks")),
    )
    return result


# ---------------------------------------------------------------- rendering


def _seconds_text(value) -> str:
    return "%.3f" % value if isinstance(value, (int, float)) else "?"


def _started_cell(capture: dict) -> str:
    """When the window opened; for a shared window, how long after its start_at (in
    milliseconds), and a late host marked as such."""
    cell = h(capture["started"])
    if capture["start_at"] is None or capture["start_delay"] is None:
        return cell
    if capture["late"]:
        return cell + '<br><span class="loss">late: %s s after the shared start</span>' % _seconds_text(
            capture["start_delay"]
        )
    return cell + '<br><span class="muted">shared window, +%.1f ms</span>' % (capture["start_delay"] * 1000)


def _lost_cell(capture: dict) -> str:
    lost = capture["lost_events"]
    parts = []
    if isinstance(lost, dict):
        for cpu, value in sorted(lost.items(), key=_cpu_order):
            count = _int(value)
            loss = count is None or count > 0
            parts.append('<span class="cpu%s">cpu%s: %s</span>' % (" loss" if loss else "", h(cpu), h(value)))
    else:
        parts.append('<span class="muted">not recorded</span>')
    dat = capture["dat"]
    if dat:
        flagged = sum(dat["pages_missed_events"].values())
        if flagged:
            parts.append(
                '<br><span class="loss">%d page(s) flagged &quot;events missed&quot; in the trace.dat</span>' % flagged
            )
    return "".join(parts)


def _events_cell(capture: dict) -> str:
    text = h(capture["events"]) if capture["events"] is not None else '<span class="muted">-</span>'
    dat = capture["dat"]
    if dat is not None and dat["events"] != capture["events"]:
        text += '<br><span class="warn">trace.dat: %d</span>' % dat["events"]
    per_cpu = capture["events_per_cpu"]
    if per_cpu:
        text += '<br><span class="small muted">%s</span>' % ", ".join(
            "cpu%s: %s" % (h(cpu), h(count)) for cpu, count in sorted(per_cpu.items(), key=_cpu_order)
        )
    return text


def _command_cell(capture: dict) -> str:
    command = capture["command"]
    if not command:
        return '<span class="muted">-</span>'
    rc = command.get("rc")
    css = "ok" if rc == 0 else "bad"
    return '<code>%s</code><br><span class="%s">rc %s</span>' % (h(command.get("cmd")), css, h(rc))


def _wall_text(wall_ns: int) -> str:
    seconds, nanoseconds = divmod(wall_ns, NS_PER_S)
    try:
        stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "%d ns since the epoch" % wall_ns
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % nanoseconds


def _anchor_cell(capture: dict) -> str:
    """Where the capture sits on its host's wall clock, and how well that is known."""
    anchor = capture["anchor"]
    if anchor is None:
        return '<span class="muted">none</span>'
    return '%s<br><span class="small muted">uncertainty %s</span>' % (
        h(_wall_text(anchor.wall_ns)),
        h(_clock_anchor.describe_uncertainty(anchor)),
    )


def _failure_row(anchor: str, host: dict) -> str:
    """A failed host's row: failed or unreachable, the task, the reason, when."""
    failure = host["failure"]
    what = "unreachable" if failure.get("unreachable") else "failed"
    details = []
    if failure.get("task"):
        details.append("task: %s" % h(failure["task"]))
    if failure.get("time"):
        details.append("recorded %s" % h(failure["time"]))
    return (
        '<tr%s class="failed"><th scope="row">%s</th><td>%s</td>'
        '<td colspan="12"><span class="bad">%s</span>: %s%s</td></tr>'
        % (
            anchor,
            h(host["name"]),
            h(host["kernel"]),
            what,
            h(failure.get("reason")),
            ('<br><span class="muted">%s</span>' % " &middot; ".join(details)) if details else "",
        )
    )


def _hosts_table(model: dict) -> str:
    rows = []
    for number, host in enumerate(model["hosts"], 1):
        anchor = ' id="host-%d"' % number
        if not host["captures"]:
            if host["failure"] is None:
                rows.append(
                    '<tr%s><th scope="row">%s</th><td>%s</td><td colspan="12" class="muted">no captures</td></tr>'
                    % (anchor, h(host["name"]), h(host["kernel"]))
                )
            else:
                rows.append(_failure_row(anchor, host))
            continue
        for capture in host["captures"]:
            fmt = capture["format"]
            fmt_text = "trace.dat" if fmt == "dat" else "text capture" if fmt == "text" else str(fmt)
            compress = capture["compress"]
            rows.append(
                '<tr%s><th scope="row">%s</th><td>%s</td><td>%s</td><td>%s%s</td><td>%s</td><td class="mono">%s</td>'
                '<td>%s</td><td class="mono">%s</td><td class="num">%s</td><td class="num">%s</td><td>%s</td>'
                '<td class="num">%s</td><td class="num">%s</td><td>%s</td></tr>'
                % (
                    anchor,
                    h(host["name"]),
                    h(host["kernel"]),
                    h(capture["name"]),
                    h(fmt_text),
                    ('<br><span class="muted">%s</span>' % h(compress)) if compress else "",
                    h(capture["trace_clock"]),
                    _anchor_cell(capture),
                    h(capture["instance"]) if capture["instance"] else '<span class="muted">top level</span>',
                    _started_cell(capture),
                    "%.2f" % capture["seconds"] if capture["seconds"] is not None else "-",
                    _events_cell(capture),
                    _lost_cell(capture),
                    h(human_bytes(capture["transferred_bytes"])),
                    h(human_bytes(capture["stored_bytes"])),
                    _command_cell(capture),
                )
            )
            anchor = ""
        if host["failure"] is not None:
            rows.append(_failure_row("", host))
    return (
        "<table><thead><tr><th>Host</th><th>Kernel</th><th>Capture</th><th>Format</th><th>Trace clock</th>"
        "<th>Wall-clock anchor</th><th>Instance</th>"
        '<th>Started (host clock)</th><th class="num">Window s</th><th class="num">Events</th>'
        '<th>Lost per CPU</th><th class="num">Transferred</th><th class="num">Stored</th><th>Command</th>'
        "</tr></thead><tbody>%s</tbody></table>" % "".join(rows)
    )


def _files_table(model: dict) -> str:
    rows = []
    for host in model["hosts"]:
        for capture in host["captures"]:
            for entry in capture["files"]:
                name = (
                    ('<a href="%s">%s</a>' % (href(entry["path"]), h(entry["path"])))
                    if entry["link"]
                    else h(entry["path"])
                )
                rows.append(
                    '<tr><td>%s</td><td>%s</td><td class="mono">%s</td><td class="num">%s</td>'
                    '<td class="mono sha">%s</td><td class="%s">%s</td></tr>'
                    % (
                        h(host["name"]),
                        h(capture["name"]),
                        name,
                        h(human_bytes(entry["bytes"])),
                        h(entry["sha256"]),
                        entry["status"],
                        h(entry["check"]),
                    )
                )
    if not rows:
        return '<p class="muted">No files in the manifest.</p>'
    return (
        '<table><thead><tr><th>Host</th><th>Capture</th><th>File</th><th class="num">Bytes</th>'
        "<th>sha256 (manifest)</th><th>Check</th></tr></thead><tbody>%s</tbody></table>" % "".join(rows)
    )


def _nice_step(total: float, most: int = 10) -> float:
    raw = total / most
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_label(seconds: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return "%.*f s" % (decimals, seconds)


def _timeline(model: dict) -> str:
    rows = [(host, capture) for host in model["hosts"] for capture in host["captures"] if capture["format"] == "dat"]
    text_captures = [
        "%s / %s" % (host["name"], capture["name"])
        for host in model["hosts"]
        for capture in host["captures"]
        if capture["format"] != "dat"
    ]
    if not rows:
        note = '<p class="muted">No trace.dat captures, so no timeline.</p>'
    else:
        note = ""
    plot = SVG_WIDTH - LABEL_WIDTH - RIGHT_MARGIN
    buckets = model["buckets"]
    height = len(rows) * ROW_HEIGHT + AXIS_HEIGHT
    parts = []
    for index, (host, capture) in enumerate(rows):
        top = index * ROW_HEIGHT
        label = "%s / %s" % (host["name"], capture["name"])
        shown = label if len(label) <= 34 else label[:33] + "\u2026"
        parts.append('<g class="row" transform="translate(0,%d)"><title>%s</title>' % (top, h(label)))
        parts.append('<text x="0" y="%d">%s</text>' % (BAR_HEIGHT // 2 + 4, h(shown)))
        parts.append('<rect class="lane" x="%d" y="0" width="%d" height="%d"/>' % (LABEL_WIDTH, plot, BAR_HEIGHT))
        histogram = capture["histogram"]
        if capture["dat_error"] or histogram is None:
            parts.append(
                '<text class="note" x="%d" y="%d">trace.dat not read (see the problems above)</text>'
                % (LABEL_WIDTH + 6, BAR_HEIGHT // 2 + 4)
            )
        else:
            counts = histogram["counts"]
            peak = max(counts) if counts else 0
            width = plot / buckets
            span = histogram["span"]
            for bucket, count in enumerate(counts):
                if not count:
                    continue
                tall = max(1.0, BAR_HEIGHT * count / peak)
                if _clock_in_ns(capture):
                    start = bucket * span / buckets / NS_PER_S
                    what = "%.3f-%.3f s" % (start, start + span / buckets / NS_PER_S)
                else:
                    what = "bucket %d of %d" % (bucket + 1, buckets)
                parts.append(
                    '<rect class="hbar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d events, %s'
                    "</title></rect>"
                    % (LABEL_WIDTH + bucket * width, BAR_HEIGHT - tall, max(width - 1, 1), tall, h(label), count, what)
                )
            clock = capture.get("dat_clock") or capture["trace_clock"]
            suffix = "" if _clock_in_ns(capture) else " (clock %s: own span)" % clock
            parts.append(
                '<text class="small" x="%d" y="%d">peak %d%s</text>'
                % (LABEL_WIDTH + plot + 6, BAR_HEIGHT // 2 + 4, peak, h(suffix) if suffix else "")
            )
            if not counts or not peak:
                parts.append(
                    '<text class="small" x="%d" y="%d">no events</text>' % (LABEL_WIDTH + 6, BAR_HEIGHT // 2 + 4)
                )
        parts.append("</g>")
    axis_seconds = model["axis"]["ns"] / NS_PER_S
    axis_y = len(rows) * ROW_HEIGHT + 4
    if rows:
        parts.append(
            '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>' % (LABEL_WIDTH, axis_y, LABEL_WIDTH + plot, axis_y)
        )
    if model["axis"]["ns_rows"]:
        step = _nice_step(axis_seconds)
        tick = 0.0
        while tick <= axis_seconds * 1.000001:
            x = LABEL_WIDTH + plot * tick / axis_seconds
            parts.append('<line class="tick" x1="%.1f" y1="0" x2="%.1f" y2="%d"/>' % (x, x, axis_y + 4))
            parts.append(
                '<text class="small" x="%.1f" y="%d" text-anchor="middle">%s</text>'
                % (x, axis_y + 16, h(_tick_label(tick, step)))
            )
            tick += step
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" '
        'aria-label="events over time per host">%s</svg>' % (SVG_WIDTH, height, SVG_WIDTH, height, "".join(parts))
    )
    if model["axis"].get("wall_aligned"):
        caption = (
            "Events per %s of the axis, one row per trace.dat capture; bar heights are scaled to each "
            "row's peak. Each host's trace clock is its own, so the rows are lined up through the clock "
            "anchor each capture recorded when its window opened (the host's wall clock and its trace "
            "clock, read together): time 0 is the earliest window start, and rows are as well aligned as "
            "the hosts' wall clocks are synchronised%s." % ("1/%d" % model["buckets"], _alignment_words(rows))
        )
    else:
        caption = (
            "Events per %s of the capture window, one row per trace.dat capture; bar heights are scaled to "
            "each row's peak. Each host's trace clock is its own (local clocks are not synchronised between "
            "hosts), so every row starts at its own window start, taken as the first event in that host's "
            "trace.dat, and rows are not aligned in absolute time. Rows on nanosecond clocks share the axis "
            "in seconds; a row on another clock (counter, x86-tsc, uptime) spans its own first to last event."
            % ("1/%d" % model["buckets"])
        )
    if text_captures:
        caption += " Not shown (text capture, no trace.dat): %s." % ", ".join(text_captures)
    if not rows:
        return note + ('<p class="muted">%s</p>' % h(caption) if text_captures else "")
    return "<figure>%s<figcaption>%s</figcaption></figure>" % (svg, h(caption))


def _alignment_words(rows: list) -> str:
    """How well the anchors themselves are known, over the timeline's rows."""
    anchors = [capture["anchor"] for _host, capture in rows if capture["anchor"] is not None]
    known = [anchor.uncertainty_ns for anchor in anchors if anchor.uncertainty_ns is not None]
    if anchors and len(known) == len(anchors):
        worst = max(anchors, key=lambda anchor: anchor.uncertainty_ns or 0)
        return ", plus each anchor's own uncertainty (at most %s here)" % _clock_anchor.describe_uncertainty(worst)
    return ", plus each anchor's own uncertainty (not known for %d of the %d rows)" % (
        len(anchors) - len(known),
        len(anchors),
    )


def _open_section(model: dict) -> str:
    """The Perfetto archive of the run, and the trace-cmd command merging its trace.dat files."""
    parts = []
    if model["perfetto"]:
        parts.append(
            '<p><a href="%s">%s</a>: every host on one timeline in Perfetto, with each host&#39;s Ansible tasks '
            'beside its trace. Open <a href="https://ui.perfetto.dev">ui.perfetto.dev</a>, choose <em>Open trace '
            "file</em> and pick this file (as it is, not unpacked).</p>"
            % (href(model["perfetto"]), h(model["perfetto"]))
        )
    else:
        parts.append(
            '<p class="muted">No Perfetto archive in the run directory (tracefleet.ftrace.perfetto_export writes '
            "%s).</p>" % h(_perfetto_archive.ARCHIVE)
        )
    merge = model["merge"]
    if merge:
        if merge["dated"]:
            note = "every file carries a DATE option, which trace-cmd applies: events line up on the hosts' wall clocks"
        else:
            note = (
                "not every file carries a DATE option, so trace-cmd orders events by each host's own trace clock; "
                "the timeline above and the Perfetto archive line hosts up through their clock anchors"
            )
        parts.append(
            "<p>All trace.dat files merged by timestamp, from the run directory (%s):</p><pre><code>%s</code></pre>"
            % (h(note), h(merge["command"]))
        )
    return "".join(parts)


def _event_tables(model: dict, top: int) -> str:
    sections = []
    for host in model["hosts"]:
        for capture in host["captures"]:
            title = "<h3>%s / %s</h3>" % (h(host["name"]), h(capture["name"]))
            dat = capture["dat"]
            if capture["format"] != "dat":
                enabled = capture["enabled_events"]
                sections.append(
                    title
                    + "<p>text capture: %s events by the manifest, not counted by name.%s</p>"
                    % (
                        h(capture["events"] if capture["events"] is not None else "no count of"),
                        (" Enabled: <code>%s</code>." % h(", ".join(enabled))) if enabled else "",
                    )
                )
                continue
            if dat is None:
                sections.append(title + '<p class="bad">trace.dat not read: %s</p>' % h(capture["dat_error"]))
                continue
            names = list(dat["events_by_name"].items())
            if not names:
                sections.append(title + '<p class="muted">No events in the trace.dat.</p>')
                continue
            peak = names[0][1]
            rows = []
            for name, count in names[:top]:
                rows.append(
                    '<tr><td class="mono">%s</td><td class="num">%d</td><td><span class="bar" '
                    'style="width:%.1f%%"></span></td></tr>' % (h(name), count, 100.0 * count / peak)
                )
            rest = names[top:]
            if rest:
                rows.append(
                    '<tr><td class="muted">%d more event name(s)</td><td class="num">%d</td><td></td></tr>'
                    % (len(rest), sum(count for _name, count in rest))
                )
            sections.append(
                title + '<table class="events"><thead><tr><th>Event</th><th class="num">Count</th>'
                '<th style="width:40%%">Share of the top one</th></tr></thead><tbody>%s</tbody></table>' % "".join(rows)
            )
    return "".join(sections) or '<p class="muted">No captures.</p>'


def _audit_section(audit: dict | None) -> str:
    if audit is None:
        return ""
    links = []
    if audit.get("link"):
        links.append('<a href="%s">%s</a>' % (href(audit["link"]), h(audit["link"])))
    if audit.get("html_link"):
        links.append('<a href="%s">%s</a>' % (href(audit["html_link"]), h(audit["html_link"])))
    where = " ".join(links) if links else "<code>%s</code>" % h(audit["path"])
    if audit.get("error"):
        return '<section id="audit"><h2>Compliance audit</h2><p class="warn">%s: %s</p></section>' % (
            where,
            h(audit["error"]),
        )
    violating = audit["violating"]
    items = "".join(
        '<li><strong>%s</strong>: <span class="bad">%s</span></li>' % (h(host), h(", ".join(checks)))
        for host, checks in sorted(violating.items())
    )
    checks = audit["checks"]
    return (
        '<section id="audit"><h2>Compliance audit</h2><p>%s</p><p>%s host(s): <span class="ok">%d compliant</span>, '
        '<span class="%s">%d violating</span>, %d without a result; checks: %s passed, %s failed, %s skipped.</p>'
        "%s%s</section>"
        % (
            where,
            h(audit["hosts"]),
            len(audit["compliant"]),
            "bad" if violating else "ok",
            len(violating),
            len(audit["no_result"]),
            h(checks.get("pass", "-")),
            h(checks.get("fail", "-")),
            h(checks.get("skip", "-")),
            ("<ul>%s</ul>" % items) if items else "",
            ('<p class="warn">No result: %s</p>' % h(", ".join(audit["no_result"]))) if audit["no_result"] else "",
        )
    )


def render(model: dict, title: str | None = None, audit: dict | None = None, top: int = 10) -> str:
    run_id = model["run_id"]
    title = title or "tracefleet run %s" % run_id
    problems = "".join("<li>%s</li>" % h(problem) for problem in model["problems"])
    meta = []
    for key in ("created", "updated"):
        if model[key]:
            meta.append("%s %s" % (key, h(model[key])))
    totals = [
        "<li><strong>%d</strong> host(s)</li>" % model["captured_hosts"],
        "<li><strong>%d</strong> capture(s)</li>" % model["captures"],
        "<li><strong>%d</strong> events</li>" % model["events"],
        '<li class="%s"><strong>%d</strong> lost events</li>' % ("loss" if model["lost"] else "", model["lost"]),
    ]
    if model["failed_hosts"]:
        totals.append('<li class="loss"><strong>%d</strong> failed host(s)</li>' % model["failed_hosts"])
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>%s</title><style>%s</style></head><body>\n" % (h(title), STYLE),
            '<header><h1>%s</h1><p class="meta">run <code>%s</code>%s</p><ul class="totals">%s</ul></header>\n'
            % (h(title), h(run_id), (" &middot; " + " &middot; ".join(meta)) if meta else "", "".join(totals)),
            ('<section id="problems"><h2>Problems</h2><ul class="bad">%s</ul></section>\n' % problems)
            if problems
            else "",
            '<section id="hosts"><h2>Hosts</h2>%s</section>\n' % _hosts_table(model),
            '<section id="timeline"><h2>Events over time</h2>%s</section>\n' % _timeline(model),
            '<section id="open"><h2>Open the run</h2>%s</section>\n' % _open_section(model),
            '<section id="events"><h2>Events by name (top %d)</h2>%s</section>\n' % (top, _event_tables(model, top)),
            '<section id="files"><h2>Files</h2>%s</section>\n' % _files_table(model),
            _audit_section(audit),
            '\n<footer><p class="muted">Written by tracefleet.ftrace.run_report from <a href="%s">%s</a>; event '
            "counts, timelines and loss flags read from the trace.dat files themselves.</p></footer>\n"
            % (MANIFEST, MANIFEST),
            "</body></html>\n",
        ]
    )


# ---------------------------------------------------------------- the file


def write_report(
    run_dir: str, title: str | None = None, audit: str | None = None, top: int = 10, dry_run: bool = False
) -> dict:
    """Build and (unless dry_run) write <run_dir>/report.html. Returns what the
    action reports: path, changed, hosts, failed_hosts, events, lost_events, problems."""
    if not os.path.isdir(run_dir):
        raise RunReportError("run_dir=%r is not a directory" % run_dir)
    if top < 1:
        raise RunReportError("top_events=%r: at least 1" % top)
    left_out: list[str] = []
    manifest = _run_dir.load_manifest(run_dir, left_out)
    model = build_model(run_dir, manifest, left_out=left_out)
    data = render(model, title=title, audit=audit_summary(run_dir, audit), top=top).encode("utf-8", "backslashreplace")
    path = os.path.join(run_dir, REPORT_NAME)
    try:
        with open(path, "rb") as handle:
            changed = handle.read() != data
    except FileNotFoundError:
        changed = True
    if changed and not dry_run:
        _atomicfile.replace(path, data, mode=_runs.FILE_MODE)
    return dict(
        path=path,
        changed=changed,
        run_id=model["run_id"],
        hosts=model["captured_hosts"],
        failed_hosts=model["failed_hosts"],
        captures=model["captures"],
        events=model["events"],
        lost_events=model["lost"],
        problems=model["problems"],
    )

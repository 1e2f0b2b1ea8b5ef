# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import re
import stat

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _run_report
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._run_report import (
    RunReportError,
    write_report,
)

S = 1_000_000_000
HOSTILE = "<script>alert(1)</script>"


class Page(html.parser.HTMLParser):
    """The tags, attributes and text of a page, as a browser's tokenizer sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag, **attrs):
        return [
            found
            for name, found in self.tags
            if name == tag and all(found.get(key.rstrip("_")) == value for key, value in attrs.items())
        ]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dat_capture(builder, run_dir, directory, seconds=5.0, events=None, lost=None):
    """A dat capture whose trace.dat holds one event per second on CPU 0 and two at
    the start on CPU 1; returns its manifest entry."""
    start = 7_000 * S
    builder.add_page(
        0,
        builder.page(
            start,
            [builder.data(0, builder.wakeup(1))]
            + [builder.extend(S) + builder.data(0, builder.wakeup(42)) for _second in range(4)],
        ),
    )
    builder.add_page(
        1,
        builder.page(
            start + 10, [builder.data(0, builder.wakeup(1, cpu=1)), builder.data(5, builder.print_(42, b"hello"))]
        ),
    )
    (run_dir / directory).mkdir(parents=True, exist_ok=True)
    path = run_dir / directory / "trace.dat"
    builder.write(path)
    return {
        "name": "trace",
        "format": "dat",
        "instance": "tracefleet",
        "trace_clock": "local",
        "started": "2026-11-27T03:15:02.123456Z",
        "seconds": seconds,
        "events": 7 if events is None else events,
        "events_per_cpu": {"0": 5, "1": 2},
        "lost_events": lost or {"0": 0, "1": 0},
        "enabled_events": ["sched:sched_wakeup"],
        "compress": "zstd",
        "transferred_bytes": 1234,
        "files": [{"path": "%s/trace.dat" % directory, "bytes": path.stat().st_size, "sha256": sha256(path)}],
        "command": {"cmd": "sleep 5", "rc": 0},
    }


def text_capture(run_dir, directory):
    (run_dir / directory).mkdir(parents=True, exist_ok=True)
    path = run_dir / directory / "trace.txt"
    path.write_text("# tracer: nop\n")
    return {
        "name": "trace",
        "format": "text",
        "instance": None,
        "trace_clock": "local",
        "seconds": 2.0,
        "events": 3,
        "events_per_cpu": {"0": 3},
        "lost_events": {"0": 0},
        "compress": "none",
        "files": [{"path": "%s/trace.txt" % directory, "bytes": path.stat().st_size, "sha256": sha256(path)}],
    }


def write_manifest(run_dir, hosts):
    manifest = {
        "format": 1,
        "run_id": run_dir.name,
        "created": "2026-11-27T03:15:00Z",
        "updated": "2026-11-27T03:15:09Z",
        "extra": {"future": True},
        "hosts": hosts,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def run_dir(tmp_path, tracedat):
    run = tmp_path / "20261127T031500Z-1a2b3c4d"
    run.mkdir()
    hostile_dir = "_script_alert_1___script_-0a1b2c3d"
    write_manifest(
        run,
        {
            "web01": {
                "dir": "web01",
                "kernel": "6.1.0-56-cloud-amd64",
                "captures": [dat_capture(tracedat(), run, "web01", lost={"0": 0, "1": 12})],
            },
            HOSTILE: {
                "dir": hostile_dir,
                "kernel": "<b>6.1</b>",
                "captures": [dat_capture(tracedat(uname=HOSTILE), run, hostile_dir, seconds=2.0)],
            },
            "../x": {"dir": "x-5e6f7a8b", "captures": [text_capture(run, "x-5e6f7a8b")]},
        },
    )
    return run


def test_report_of_a_run(run_dir):
    result = write_report(str(run_dir))
    assert result["changed"] is True
    assert result["path"] == str(run_dir / "report.html")
    assert (result["hosts"], result["captures"], result["events"], result["lost_events"]) == (3, 3, 17, 12)
    assert result["problems"] == []
    text = (run_dir / "report.html").read_text()
    page = Page(text)
    # Each host, by its name as given, in the hosts table and the timeline.
    for host in ("web01", HOSTILE, "../x"):
        assert host in page.all_text
    # Nothing from the manifest became markup.
    assert not page.having("script") and not page.having("b")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # One histogram row per dat capture; the text capture is named as such.
    rows = page.having("g", class_="row")
    assert len(rows) == 2
    assert "text capture" in page.all_text
    # Loss is highlighted where there was some.
    assert "cpu1: 12" in page.all_text
    assert len([attrs for tag, attrs in page.tags if "loss" in attrs.get("class", "").split()]) >= 2
    # Files are linked relative to the page, with their checksums verified.
    links = {attrs["href"] for attrs in page.having("a")}
    assert {"web01/trace.dat", "x-5e6f7a8b/trace.txt", "manifest.json"} <= links
    assert all(not link.startswith(("/", "http", "file:")) and ".." not in link for link in links)
    assert page.all_text.count("sha256 verified") == 3
    # Event counts by name, from the trace.dat files.
    assert "sched:sched_wakeup" in page.all_text and "ftrace:print" in page.all_text
    # Self-contained: no scripts, nothing fetched.
    assert not page.having("link") and not page.having("img") and not page.having("iframe")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_histogram_rows_count_the_events(run_dir):
    write_report(str(run_dir))
    page = Page((run_dir / "report.html").read_text())
    bars = [attrs for tag, attrs in page.tags if tag == "rect" and attrs.get("class") == "hbar"]
    # web01: one event a second on CPU 0, three events at the start; the window of 5 s
    # is the axis for both rows. The other host has the same trace.
    assert len(bars) == 2 * 5
    ticks = [attrs for tag, attrs in page.tags if tag == "text" and attrs.get("text-anchor") == "middle"]
    assert len(ticks) == 11  # 0 s to 5 s every 0.5 s
    assert "every row starts at its own window start" in page.all_text


def test_second_run_changes_nothing_and_check_mode_writes_nothing(run_dir):
    assert write_report(str(run_dir), dry_run=True)["changed"] is True
    assert not (run_dir / "report.html").exists()
    assert write_report(str(run_dir))["changed"] is True
    before = (run_dir / "report.html").stat().st_mtime_ns
    assert write_report(str(run_dir))["changed"] is False
    assert (run_dir / "report.html").stat().st_mtime_ns == before
    assert write_report(str(run_dir), title="Another title", dry_run=True)["changed"] is True
    assert "Another title" not in (run_dir / "report.html").read_text()
    assert [name for name in os.listdir(run_dir) if name.startswith(".")] == []


def test_problems_are_reported_not_fatal(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    web01 = manifest["hosts"]["web01"]["captures"][0]
    web01["events"] = 99
    web01["files"].append({"path": "../../etc/passwd", "bytes": 1, "sha256": "00"})
    web01["files"].append({"path": "web01/gone.dat", "bytes": 1, "sha256": "00"})
    manifest["hosts"]["../x"]["captures"][0]["files"][0]["sha256"] = "ab" * 32
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run_dir))
    problems = "\n".join(result["problems"])
    assert "the manifest counts 99 events, the trace.dat holds 7" in problems
    assert "../../etc/passwd: not inside the run directory" in problems
    assert "web01/gone.dat: missing" in problems
    assert "x-5e6f7a8b/trace.txt: sha256 differs" in problems
    page = Page((run_dir / "report.html").read_text())
    assert "../../etc/passwd" not in {attrs.get("href") for attrs in page.having("a")}
    assert page.having("section", id="problems")


def test_unreadable_trace_gets_a_row_saying_so(run_dir):
    (run_dir / "web01" / "trace.dat").write_bytes(b"not a trace at all, just bytes")
    result = write_report(str(run_dir))
    assert any("not a trace.dat file" in problem for problem in result["problems"])
    assert str(run_dir) not in "".join(result["problems"])
    page = Page((run_dir / "report.html").read_text())
    assert len(page.having("g", class_="row")) == 2
    assert "trace.dat not read" in page.all_text


def test_sparse_manifest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_manifest(
        run,
        {
            "bare": {},
            "odd": {
                "dir": 5,
                "captures": [
                    {"format": "dat", "files": "nope", "lost_events": [1, 2], "seconds": "long", "events": "many"},
                    "not a capture",
                ],
            },
        },
    )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["format"] = 2
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run))
    assert result["hosts"] == 2 and result["events"] == 0
    assert any("no .dat file" in problem for problem in result["problems"])
    assert "manifest format 2, not 1" in result["problems"][0]
    page = Page((run / "report.html").read_text())
    assert "no captures" in page.all_text and "not recorded" in page.all_text


def test_no_manifest(tmp_path):
    with pytest.raises(RunReportError, match="no manifest.json"):
        write_report(str(tmp_path))
    (tmp_path / "manifest.json").write_text("[1, 2")
    with pytest.raises(RunReportError, match="cannot read it as JSON"):
        write_report(str(tmp_path))
    with pytest.raises(RunReportError, match="is not a directory"):
        write_report(str(tmp_path / "missing"))


def test_audit_summary_and_links(run_dir):
    audit = run_dir / "audit"
    audit.mkdir()
    (audit / "compliance.html").write_text("<html></html>")
    (audit / "compliance.json").write_text(
        json.dumps(
            {
                "format": 1,
                "summary": {
                    "hosts": 3,
                    "compliant": ["web01"],
                    "violating": {HOSTILE: ["debugfs_not_mounted"]},
                    "no_result": ["../x"],
                    "checks": {"pass": 10, "fail": 1, "skip": 2},
                },
            }
        )
    )
    write_report(str(run_dir))  # found at the default place
    page = Page((run_dir / "report.html").read_text())
    assert page.having("section", id="audit")
    assert {"audit/compliance.json", "audit/compliance.html"} <= {attrs["href"] for attrs in page.having("a")}
    assert "1 compliant" in page.all_text and "1 violating" in page.all_text
    assert HOSTILE + ": debugfs_not_mounted" in page.all_text and not page.having("script")
    write_report(str(run_dir), audit=str(run_dir / "nowhere.json"))
    assert "not found" in Page((run_dir / "report.html").read_text()).all_text


def test_other_clocks_span_their_own_events(tmp_path, tracedat):
    run = tmp_path / "run"
    entry = dat_capture(tracedat(clock="x86-tsc"), run, "tsc")
    entry["trace_clock"] = "x86-tsc"
    write_manifest(run, {"tsc": {"dir": "tsc", "captures": [entry]}})
    write_report(str(run))
    page = Page((run / "report.html").read_text())
    assert "(clock x86-tsc: own span)" in page.all_text
    # No row on a nanosecond clock: no axis in seconds.
    assert not [attrs for tag, attrs in page.tags if tag == "text" and attrs.get("text-anchor") == "middle"]
    assert len(page.having("rect", class_="hbar")) == 5


def test_human_bytes():
    assert [_run_report.human_bytes(value) for value in (None, 5, 2048, 5 * 1024**3, "x")] == [
        "-",
        "5 B",
        "2.0 KiB",
        "5.0 GiB",
        "-",
    ]


def test_rows_line_up_through_the_clock_anchors(tmp_path, tracedat):
    """Two hosts whose trace clocks differ wildly; their anchors say the second host's
    window opened 2 s after the first's. The first event of each is 0.5 s after its
    window opened, so the second row's bars sit 2 s to the right of the first's."""
    run = tmp_path / "run"
    run.mkdir()
    early = dat_capture(tracedat(), run, "early")
    late = dat_capture(tracedat(), run, "late")
    # Both traces start at 7000 s on their own clock (see dat_capture).
    early["clock_anchor"] = {"wall": 1000.0, "trace": 6999.5, "clock": "local"}
    late["clock_anchor"] = {"wall": 1002.0, "trace": 6999.5, "clock": "local"}
    write_manifest(run, {"early": {"dir": "early", "captures": [early]}, "late": {"dir": "late", "captures": [late]}})
    model = _run_report.build_model(str(run), json.loads((run / "manifest.json").read_text()))
    assert model["axis"]["wall_aligned"] is True
    rows = {host["name"]: host["captures"][0]["histogram"] for host in model["hosts"]}
    assert rows["early"]["origin"] == 6999_500_000_000
    assert rows["late"]["origin"] == 6997_500_000_000
    buckets = len(rows["early"]["counts"])

    def first_bucket(counts):
        return next(index for index, count in enumerate(counts) if count)

    # The axis covers the later window's end: 2 s + 0.5 s + 4 s of events.
    assert model["axis"]["ns"] >= 6_500_000_000
    shift = first_bucket(rows["late"]["counts"]) - first_bucket(rows["early"]["counts"])
    assert abs(shift - 2e9 / model["axis"]["ns"] * buckets) <= 1
    write_report(str(run))
    assert "lined up through the clock anchor" in Page((run / "report.html").read_text()).all_text


# ---------------------------------------------------------------- hostile manifests (issue 12, finding 11)


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("seconds", 1e300, r"seconds=1e\+300: out of range"),
        ("seconds", float("nan"), r"seconds=nan: not a finite number"),
        ("clock_anchor", {"wall": 1e300, "trace": 1e300}, r"clock_anchor\.wall=1e\+300: out of range"),
        ("clock_anchor", {"wall": 1.0, "trace": float("-inf")}, r"clock_anchor\.trace=-inf: not a finite number"),
        ("events", 1e300, r"events=1e\+300: an integer is expected, not float"),
        ("events", 10**400, r"events=an integer of 1329 bits: out of range"),
        ("lost_events", {"0": 1e300}, r"lost_events\['0'\]=1e\+300: an integer is expected"),
        ("timings", {"window": float("inf")}, r"timings\['window'\]=inf: not a finite number"),
        ("name", "trace\udcff", None),
        ("trace_clock", "loc\ud800al", None),
        ("enabled_events", ["sched:\udcff", "\x1b[31mred"], None),
    ],
)
def test_a_hostile_manifest_renders_safely(run_dir, field, value, problem):
    """A 1e300 float, an infinite one, a huge integer or a lone surrogate in the
    manifest gives a report, with the field named among its problems: no traceback."""
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["hosts"]["web01"]["captures"][0][field] = value
    manifest["hosts"]["web01"]["kernel"] = "6.1\udcff"
    manifest["hosts"]["we\udcffb\n\x1b[2J"] = {"dir": "x", "captures": []}
    path.write_text(json.dumps(manifest))  # lone surrogates as \udcff escapes, NaN as NaN
    result = write_report(str(run_dir))
    text = (run_dir / "report.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert "\x1b" not in text and "\\udcff" in text and "we\\udcffb \\x1b[2J" in text
    problems = "\n".join(result["problems"])
    if problem:
        assert re.search(r"manifest\.json\.hosts\['web01'\]\.captures\[0\]\." + problem, problems), problems
        assert "(left out of the report)" in problems
    else:
        assert result["problems"] == []
    assert result["hosts"] == 4


# ---------------------------------------------------------------- wall-clock anchors, Perfetto, trace-cmd (issue 13)


@pytest.fixture
def ns_anchor_schema(monkeypatch):
    """The manifest schema with the integer anchor fields the capture records (wall_ns,
    trace_ns, uncertainty_ns), as _host_result declares them for the target's newer
    results; without them the report falls back to the float seconds."""
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result

    fields = _host_result.MANIFEST_CAPTURE.fields["clock_anchor"].fields
    for name in ("wall_ns", "trace_ns", "uncertainty_ns"):
        if name not in fields:
            monkeypatch.setitem(fields, name, _host_result.Int(-(1 << 62), 1 << 62, nullable=True))


def test_nanosecond_anchors_align_rows_and_show_their_uncertainty(tmp_path, tracedat, ns_anchor_schema):
    run = tmp_path / "run"
    run.mkdir()
    early = dat_capture(tracedat(), run, "early")
    late = dat_capture(tracedat(), run, "late")
    # The floats alone would say the windows opened together; the integers, 2 s apart.
    early["clock_anchor"] = {
        "wall": 1000.0,
        "trace": 6999.5,
        "wall_ns": 1_796_000_000_000_000_000,
        "trace_ns": 6_999_500_000_000,
        "uncertainty_ns": 8_400,
    }
    late["clock_anchor"] = {
        "wall": 1000.0,
        "trace": 6999.5,
        "wall_ns": 1_796_000_002_000_000_123,
        "trace_ns": 6_999_500_000_000,
        "uncertainty_ns": 2_500_000,
    }
    write_manifest(run, {"early": {"dir": "early", "captures": [early]}, "late": {"dir": "late", "captures": [late]}})
    model = _run_report.build_model(str(run), json.loads((run / "manifest.json").read_text()))
    rows = {host["name"]: host["captures"][0]["histogram"] for host in model["hosts"]}
    assert rows["early"]["origin"] == 6_999_500_000_000
    assert rows["late"]["origin"] == 6_997_499_999_877
    write_report(str(run))
    text = Page((run / "report.html").read_text()).all_text
    assert "2026-11-30T" in text  # 1796000000 s: the wall-clock time of each anchor
    assert "uncertainty 8.4 \u00b5s" in text and "uncertainty 2.5 ms" in text
    assert "each anchor's own uncertainty (at most 2.5 ms here)" in text


def test_float_anchors_say_their_uncertainty_is_unknown(tmp_path, tracedat):
    run = tmp_path / "run"
    run.mkdir()
    capture = dat_capture(tracedat(), run, "web01")
    capture["clock_anchor"] = {"wall": 1796000000.25, "trace": 6999.5, "clock": "local"}
    write_manifest(run, {"web01": {"dir": "web01", "captures": [capture]}})
    write_report(str(run))
    text = Page((run / "report.html").read_text()).all_text
    assert "2026-11-30T00:53:20.250000000Z" in text
    assert "uncertainty unknown (the capture's clock anchor (in seconds))" in text
    assert "not known for 1 of the 1 rows" in text


def test_the_report_links_the_perfetto_archive_and_gives_the_merge_command(run_dir):
    write_report(str(run_dir))
    page = Page((run_dir / "report.html").read_text())
    assert "No Perfetto archive in the run directory" in page.all_text
    assert not page.having("a", href="perfetto.tar")
    (run_dir / "perfetto.tar").write_bytes(b"\0" * 10240)
    result = write_report(str(run_dir))
    assert result["changed"] is True
    page = Page((run_dir / "report.html").read_text())
    assert page.having("a", href="perfetto.tar")
    assert "choose Open trace file and pick this file" in page.all_text
    # Both readable trace.dat files, paths relative to the run directory (quoted for a
    # shell where they need it: host directories never do).
    command = "trace-cmd report -i _script_alert_1___script_-0a1b2c3d/trace.dat -i web01/trace.dat"
    assert command in page.all_text
    assert "not every file carries a DATE option" in page.all_text


def test_the_merge_command_says_when_every_file_is_dated(tmp_path, tracedat):
    run = tmp_path / "run"
    run.mkdir()
    capture = dat_capture(tracedat(), run, "web01")
    write_manifest(run, {"web01": {"dir": "web01", "captures": [capture]}})
    model = _run_report.build_model(str(run), json.loads((run / "manifest.json").read_text()))
    assert model["merge"] == {"command": "trace-cmd report -i web01/trace.dat", "dated": False, "files": 1}
    model["hosts"][0]["captures"][0]["dat_date"] = True
    assert _run_report.merge_command(model["hosts"][0]["captures"])["dated"] is True
    assert "every file carries a DATE option" in _run_report._open_section(
        dict(model, merge=_run_report.merge_command(model["hosts"][0]["captures"]))
    )


def test_the_report_is_private_whatever_the_umask(run_dir):
    """report.html shows the hosts' events and names: 0600 like the traces it reads."""
    old = os.umask(0o000)
    try:
        write_report(str(run_dir))
    finally:
        os.umask(old)
    assert stat.S_IMODE((run_dir / "report.html").stat().st_mode) == 0o600


def test_a_shared_window_shows_each_start_and_a_late_host_is_a_problem(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    shared = dict(start_at="2026-11-27T03:15:00.000000Z", late=False, start_delay=0.0021)
    manifest["hosts"]["web01"]["captures"][0].update(shared)
    late = dict(shared, late=True, start_delay=4.25, started="2026-11-27T03:15:04.250000Z")
    manifest["hosts"]["../x"]["captures"][0].update(late)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run_dir))
    assert result["problems"] == [
        "../x / trace: armed after the shared window's start (2026-11-27T03:15:00.000000Z): it opened 4.250 s "
        "late, at 2026-11-27T03:15:04.250000Z"
    ]
    text = Page((run_dir / "report.html").read_text()).all_text
    assert "shared window, +2.1 ms" in text and "late: 4.250 s after the shared start" in text


# ---------------------------------------------------------------- failed hosts (issue 14)


def test_failed_hosts_get_a_row_and_a_problem_each(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["failed"] = {
        "web07": {
            "reason": "Failed to connect to the host via ssh: No route to host",
            "unreachable": True,
            "task": "tracefleet.ftrace.tracefs : Create the tracing group",
            "time": "2026-11-27T03:15:20Z",
        },
        # Failed after its capture, at the teardown: its capture stays in the report.
        "web01": {
            "reason": "teardown: device busy",
            "unreachable": False,
            "task": None,
            "time": "2026-11-27T03:16:00Z",
        },
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run_dir))
    assert (result["hosts"], result["failed_hosts"], result["captures"]) == (3, 2, 3)
    assert result["problems"] == [
        "web01: failed: teardown: device busy",
        "web07: unreachable: Failed to connect to the host via ssh: No route to host",
    ]
    text = (run_dir / "report.html").read_text()
    page = Page(text)
    rows = page.having("tr", class_="failed")
    assert len(rows) == 2
    assert "unreachable: Failed to connect to the host via ssh: No route to host" in page.all_text
    assert "task: tracefleet.ftrace.tracefs : Create the tracing group" in page.all_text
    assert "failed: teardown: device busy" in page.all_text
    assert "2 failed host(s)" in page.all_text
    # web01's capture row comes first, then its failure; web07 has its own row.
    hosts_section = text[text.index('<section id="hosts">') : text.index('<section id="timeline">')]
    order = [hosts_section.index(needle) for needle in ("6.1.0-56-cloud-amd64", "teardown: device busy", "web07")]
    assert order == sorted(order)
    # The timeline and the event tables have the captures only.
    assert len(page.having("g", class_="row")) == 2


def test_a_run_of_failed_hosts_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    manifest = {
        "format": 1,
        "run_id": "run",
        "hosts": {},
        "failed": {"web07": {"reason": "down", "unreachable": True}},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run))
    assert (result["hosts"], result["failed_hosts"], result["captures"]) == (0, 1, 0)
    assert result["problems"] == ["web07: unreachable: down"]
    page = Page((run / "report.html").read_text())
    assert page.having("tr", class_="failed") and "No trace.dat captures" in page.all_text


def test_a_hostile_failed_map_renders_safely(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["failed"] = {
        HOSTILE: {"reason": HOSTILE + "\x1b[2J\nnext", "unreachable": "yes", "task": HOSTILE},
        "web08": {"reason": 5},
        "web09": "down",
        "web10": {"reason": "x" * 5000},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = write_report(str(run_dir))
    text = (run_dir / "report.html").read_text()
    page = Page(text)
    assert not page.having("script") and "\x1b" not in text
    problems = "\n".join(result["problems"])
    # What the schema refuses is named and left out; the rest is shown, escaped.
    assert "manifest.json.failed[%r].unreachable='yes'" % HOSTILE in problems
    assert "manifest.json.failed['web08'].reason=5: a string is expected" in problems
    assert "manifest.json.failed['web09']='down': a dict is expected" in problems
    assert "manifest.json.failed['web10'].reason=" in problems and "longer than 2000" in problems
    assert "%s: failed: %s\\x1b[2J next" % (HOSTILE, HOSTILE) in problems
    assert "web08: failed: no reason recorded" in problems
    assert result["failed_hosts"] == 3


def test_the_perfetto_export_reads_a_manifest_with_failed_hosts(tmp_path):
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _perfetto_archive

    run = tmp_path / "run"
    run.mkdir()
    manifest = {"format": 1, "run_id": "run", "hosts": {}, "failed": {"web07": {"reason": "down"}, "web08": 5}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = _perfetto_archive.export(str(run))
    assert result["files"] == [] and result["problems"][-1] == "no trace.dat capture in the run: nothing to export"
    assert any("failed['web08']=5" in problem for problem in result["problems"])


def test_a_run_kept_as_records_reads_as_its_manifest_and_a_bad_record_is_a_problem(tmp_path, tracedat):
    """The readers go through _run_dir.load_manifest, which assembles the records the
    trace_capture action wrote (whether or not manifest.json caught up), and lists a
    record it had to leave out among the problems."""
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _perfetto_archive, _runs

    run = _runs.run_dir(str(tmp_path / "traces"), "r1")
    for host in ("web01", "web02"):
        entry = dat_capture(tracedat(), tmp_path, "stage")
        _runs.file_capture(run, host, str(tmp_path / "stage"), entry, "6.1.0")
        (tmp_path / "stage").rmdir()
    result = write_report(run)
    assert (result["hosts"], result["captures"], result["events"], result["problems"]) == (2, 2, 14, [])
    assert not os.path.exists(os.path.join(run, "manifest.json"))  # nobody rewrote it: the records are read
    with open(os.path.join(run, ".records", "hosts", "web03.json"), "w") as planted:
        planted.write('"web01"\n{"dir": "web01", "captures": []}\nnull\nnull\n')
    left_out = "'.records/hosts/web03.json': it records host 'web01', whose record is web01.json; left out"
    result = write_report(run)
    assert result["hosts"] == 2 and result["problems"] == [left_out]
    assert left_out in _perfetto_archive.export(run, dry_run=True)["problems"]

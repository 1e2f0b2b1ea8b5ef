# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_persist on the host: choose the backend, plan the file edits and commands
that make the next boot trace as declared (or no longer), and apply them.

Nothing here touches the live tracing state; what changes is what the next boot
does. Three backends, each a set of files and commands:

- cmdline: words in the boot loader's command line (`_persist_cmdline`), then its
  update command (update-grub, or what `boot_update_command` says);
- unit: `tracefleet-persist-NAME.service` and the script it runs, then
  `systemctl daemon-reload` and `systemctl enable` (never start);
- bootconfig: the `ftrace` tree attached to every initrd in /boot with
  `bootconfig -a`, an initramfs-tools hook that attaches it again to a regenerated
  initrd, and `bootconfig` on the command line.

What a setup owns is recorded in its state file, /etc/tracefleet/persist/NAME.json:
the command-line words it added, the foreign words it replaced with `force` (put back
when it goes), its files and initrds. The state file is written before a change
(covering the old and the new) and again after it, so a run killed half-way leaves a
record that teardown can undo from; each undo removes only what is still there.
The ledger's `persist` kind (recorded and undone here) points teardown at the state file.

`Host` relocates every path (tests use a fake root) and runs the commands.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import subprocess
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile, _kernel
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_bootconfig as bootconfig
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_cmdline as cmdline
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_render as render
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import (
    PersistError,
    Spec,
    build,
    cmdline_obstacles,
    parse_release,
    validate_setup_name,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    open_tracefs,
    refuse_control_characters,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

STATE_DIR = "/etc/tracefleet/persist"
KERNEL_CMDLINE = "/etc/kernel/cmdline"
GRUB_DEFAULT = "/etc/default/grub"
GRUB_DEFAULT_D = "/etc/default/grub.d"
UNIT_DIR = "/etc/systemd/system"
WANTS_DIR = UNIT_DIR + "/sysinit.target.wants"
# Exists when systemd is PID 1 (sd_booted(3)): only then is there a manager to reload.
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
# initramfs-tools runs these after writing an initrd, with the version and its path.
HOOK_DIR = "/etc/initramfs/post-update.d"
BOOT_DIR = "/boot"
CONFIG_GZ = "/proc/config.gz"
FORMAT = 1
# update-grub is Debian's wrapper of grub-mkconfig; Fedora and SUSE name it grub2-mkconfig.
GRUB_UPDATERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("update-grub", ()),
    ("grub-mkconfig", ("-o", "/boot/grub/grub.cfg")),
    ("grub2-mkconfig", ("-o", "/boot/grub2/grub.cfg")),
)
REBOOT_NOTE = "a reboot completes the change"


class Host:
    """The host trace_persist works on: `root` relocates every path (a fake tree in
    tests), `release` is the running kernel's, `run` runs a command (argv) and returns
    (rc, stdout, stderr), `which` finds a command."""

    def __init__(
        self,
        root: str = "/",
        release: str | None = None,
        run: Callable[[list], tuple] | None = None,
        which: Callable[[str], str | None] | None = None,
        tracing: TracingDir | None = None,
    ) -> None:
        self.root = root
        self.release = release if release is not None else platform.release()
        self.run = run if run is not None else _run
        self.which = which if which is not None else shutil.which
        self._tracing = tracing

    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/"))

    def exists(self, absolute: str) -> bool:
        return os.path.lexists(self.path(absolute))

    def read(self, absolute: str) -> str | None:
        return cmdline.read(self.path(absolute))

    def tracing(self) -> TracingDir:
        """The running kernel's tracefs, to check names against where it is usable; a
        directory that does not exist otherwise (nothing is mounted for this)."""
        if self._tracing is None:
            try:
                self._tracing = open_tracefs(None)
            except TracefleetError:
                self._tracing = TracingDir(self.path("/sys/kernel/tracing/.not-mounted"))
        return self._tracing


def _run(argv: list) -> tuple:
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def this_host() -> Host:
    """The host the module runs on (tests replace this)."""
    return Host()


def state_file(name: str) -> str:
    return "%s/%s.json" % (STATE_DIR, name)


def read_state(host: Host, name: str) -> dict | None:
    text = host.read(state_file(name))
    if text is None:
        return None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise PersistError("%s is damaged (%s); fix or remove it" % (state_file(name), exc)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("name") != name:
        raise PersistError("%s is not a trace_persist state file for %s; fix or remove it" % (state_file(name), name))
    return state


def _write(host: Host, absolute: str, text: str | None, mode: int | None = None) -> None:
    """Replace (or, for None, remove) the file, atomically, with `mode` (None: the
    existing file's mode and owner, 0644 for a new one); parent directories 0755."""
    path = host.path(absolute)
    try:
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        if mode is None and not os.path.exists(path):
            mode = 0o644
        _atomicfile.replace(path, text.encode(cmdline.ENCODING, cmdline.ERRORS), mode)
    except OSError as exc:
        raise PersistError("cannot write %s: %s" % (absolute, exc)) from None


class Plan:
    """The file writes and commands of one run, in order, with their diffs. Groups of
    steps roll their files back when one of their commands fails."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.steps: list[tuple[str, Callable[[], None]]] = []
        self.diffs: list[dict] = []
        self.warnings: list[str] = []
        self._files: list[tuple[str, str | None]] = []

    def file(self, absolute: str, after: str | None, mode: int | None = None, rollback: bool = True) -> bool:
        """Make the file hold `after` (None: not exist) with `mode` (None: keep the
        existing file's); whether that is a change. With `rollback`, a failed command
        of the same group puts the file back."""
        before = self.host.read(absolute)
        if before == after:
            return False
        self.diffs.append(
            {"before_header": absolute, "after_header": absolute, "before": before or "", "after": after or ""}
        )
        if rollback:
            self._files.append((absolute, before))
        what = "remove %s" % absolute if after is None else "write %s" % absolute
        self.steps.append((what, lambda: _write(self.host, absolute, after, mode)))
        return True

    def command(self, argv: list, why: str) -> None:
        """Run `argv`; when it fails, the files this plan wrote since the last `settle`
        are put back and PersistError says what failed, with its output."""
        files = list(self._files)

        def run() -> None:
            rc, out, err = self.host.run(argv)
            if rc != 0:
                problems = []
                for absolute, before in reversed(files):
                    try:
                        _write(self.host, absolute, before)
                    except PersistError as exc:
                        problems.append(str(exc))
                raise PersistError(
                    "%s: %s failed (exit %d): %s; %s"
                    % (
                        why,
                        " ".join(argv),
                        rc,
                        (err or out).strip() or "no output",
                        "the files it needed were put back" if not problems else "; ".join(problems),
                    )
                )

        self.steps.append(("run %s" % " ".join(argv), run))

    def settle(self) -> None:
        """Files written so far are no longer rolled back by later commands."""
        self._files = []

    def note(self, what: str, action: Callable[[], None]) -> None:
        self.steps.append((what, action))

    def apply(self) -> None:
        for _what, action in self.steps:
            action()

    @property
    def changes(self) -> list[str]:
        return [what for what, _action in self.steps]


# -- the command line ---------------------------------------------------------------


def found_bootloader(host: Host) -> tuple[str, str] | None:
    """(bootloader, the file that holds the next boot's command line) as found on the
    host: /etc/kernel/cmdline if it exists, else /etc/default/grub; None with neither."""
    if host.exists(KERNEL_CMDLINE):
        return "kernel-cmdline", KERNEL_CMDLINE
    if host.exists(GRUB_DEFAULT):
        return "grub", GRUB_DEFAULT
    return None


def grub_updater(host: Host) -> list | None:
    """The command that writes grub.cfg (the first of GRUB_UPDATERS installed), or None."""
    for command, arguments in GRUB_UPDATERS:
        found = host.which(command)
        if found:
            return [found] + list(arguments)
    return None


def resolve_bootloader(host: Host, wanted: str) -> tuple[str, str]:
    """(bootloader, the file that holds the next boot's command line)."""
    found = found_bootloader(host) if wanted == "auto" else None
    if found is not None:
        return found
    if wanted == "kernel-cmdline" and host.exists(KERNEL_CMDLINE):
        return "kernel-cmdline", KERNEL_CMDLINE
    if wanted == "kernel-cmdline":
        raise PersistError(
            "bootloader=kernel-cmdline: %s does not exist, and tracefleet does not create it "
            "(a boot loader that reads it, such as kernel-install's, creates it)" % KERNEL_CMDLINE
        )
    if host.exists(GRUB_DEFAULT):
        return "grub", GRUB_DEFAULT
    if wanted == "grub":
        raise PersistError("bootloader=grub: %s does not exist" % GRUB_DEFAULT)
    raise PersistError(
        "bootloader=auto: found neither %s nor %s, so the next boot's command line cannot be "
        "found; name the boot loader, or use backend unit" % (KERNEL_CMDLINE, GRUB_DEFAULT)
    )


def update_command(host: Host, bootloader: str, given: list | None) -> list | None:
    if given is not None:
        return [str(word) for word in given] or None
    if bootloader != "grub":
        return None
    found = grub_updater(host)
    if found:
        return found
    raise PersistError(
        "bootloader=grub: none of %s is installed to write grub.cfg; set boot_update_command"
        % ", ".join(command for command, _arguments in GRUB_UPDATERS)
    )


def _other_owners(host: Host, name: str) -> dict[str, str]:
    """word -> the other trace_persist setup that owns it (for messages)."""
    owners: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(host.path(STATE_DIR))):
            other = entry[: -len(".json")]
            if not entry.endswith(".json") or other == name:
                continue
            with contextlib.suppress(TracefleetError):
                state = read_state(host, other) or {}
                for word in (state.get("cmdline") or {}).get("words") or []:
                    owners[word] = other
    return owners


def plan_cmdline(
    plan: Plan,
    name: str,
    target: tuple[str, str, list | None] | None,
    wanted: list[str],
    forbidden: list[str],
    old: dict | None,
    force: bool,
) -> dict | None:
    """Plan the command-line edit: `wanted` words on `target` (bootloader, file, update
    command), or none. Words this setup added elsewhere (`old`, another file) go. Returns
    the new state's `cmdline` section (None when it owns and replaced nothing)."""
    if old and (target is None or old["file"] != target[1]):
        _plan_cmdline_file(plan, name, (old["bootloader"], old["file"], old.get("update_command")), [], [], old, force)
    if target is None:
        return None
    same = old if old and old["file"] == target[1] else None
    return _plan_cmdline_file(plan, name, target, wanted, forbidden, same, force)


def _plan_cmdline_file(
    plan: Plan, name: str, target: tuple, wanted: list[str], forbidden: list[str], old: dict | None, force: bool
) -> dict | None:
    bootloader, path, update = target
    host = plan.host
    text = host.read(path)
    if text is None:
        if not wanted:
            return None  # the file is gone, and our words with it
        raise PersistError("%s does not exist" % path)
    current = cmdline.CmdlineFile(bootloader, path, text)
    present = current.words()
    old_owned = list((old or {}).get("words") or [])
    old_replaced = list((old or {}).get("replaced") or [])
    fighting = cmdline.conflicts(present, old_owned, wanted, forbidden)
    if fighting and not force:
        owners = _other_owners(host, name)
        named = ", ".join(
            "%r%s" % (word, " (trace_persist setup %s)" % owners[word] if word in owners else "") for word in fighting
        )
        raise PersistError(
            "%s already has %s, which tracefleet did not add, for a parameter this setup sets (the "
            "kernel keeps only one); remove it, or set force=true to replace it (removing the setup "
            "puts it back)" % (path, named)
        )
    owned = [word for word in wanted if word in old_owned or word not in present]
    restore = [word for word in old_replaced if not cmdline.conflicts([word], [], wanted, forbidden)]
    replaced = [word for word in old_replaced if word not in restore] + [w for w in fighting if w not in old_replaced]
    remove = [word for word in old_owned if word not in owned] + fighting
    add = [word for word in owned if word not in present] + [word for word in restore if word not in present]
    after = current.edited(remove, add)
    section = {
        "bootloader": bootloader,
        "file": path,
        "update_command": update,
        "words": owned,
        "replaced": replaced,
    }
    if bootloader == "grub" and wanted:
        _warn_grub_overrides(plan)
    if after != text:
        plan.file(path, after)
        if update:
            plan.command(update, "updating the boot loader after editing %s" % path)
        plan.settle()
    return section if owned or replaced else None


def _warn_grub_overrides(plan: Plan) -> None:
    directory = plan.host.path(GRUB_DEFAULT_D)
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(directory)):
            text = plan.host.read("%s/%s" % (GRUB_DEFAULT_D, entry)) or ""
            if entry.endswith(".cfg") and any(
                line.strip().startswith(cmdline.GRUB_VARIABLE + "=") for line in text.split("\n")
            ):
                plan.warnings.append(
                    "%s/%s sets %s too, after %s: the words tracefleet adds there may be overridden"
                    % (GRUB_DEFAULT_D, entry, cmdline.GRUB_VARIABLE, GRUB_DEFAULT)
                )


def _check_words(spec: Spec, words: list[str], bootloader: str) -> None:
    for probe in spec.probes:
        problem = cmdline.unsafe(render.probe_word_part(probe), bootloader)
        if problem is not None:
            raise PersistError("%s: on the %s command line, %s" % (probe.option, bootloader, problem))
    for word in words:
        problem = cmdline.unsafe(word, bootloader)
        if problem is not None:
            raise PersistError("the word %r cannot go on the %s command line: %s" % (word, bootloader, problem))


# -- the unit --------------------------------------------------------------------------


def _unit_paths(name: str) -> tuple[str, str, str]:
    unit = render.unit_name(name)
    return "%s/%s" % (UNIT_DIR, unit), "%s/%s.sh" % (STATE_DIR, name), "%s/%s" % (WANTS_DIR, unit)


def _systemctl(host: Host) -> str:
    found = host.which("systemctl")
    if not found:
        raise PersistError("backend unit needs systemd, and systemctl is not installed here")
    return found


def plan_unit(plan: Plan, spec: Spec, force: bool) -> dict:
    host = plan.host
    unit_path, script_path, link = _unit_paths(spec.name)
    existing = host.read(unit_path)
    if existing is not None and not existing.startswith(render.MARK) and not force:
        raise PersistError("%s exists and tracefleet did not write it; set force=true to replace it" % unit_path)
    systemctl = _systemctl(host)
    written = plan.file(script_path, render.script_text(spec), 0o755)
    written = plan.file(unit_path, render.unit_text(spec, script_path), 0o644) or written
    if written and host.exists(SYSTEMD_RUNTIME_DIR):
        plan.command([systemctl, "daemon-reload"], "loading %s" % render.unit_name(spec.name))
    if not host.exists(link):
        plan.command([systemctl, "enable", render.unit_name(spec.name)], "enabling %s" % render.unit_name(spec.name))
    plan.settle()
    return {"unit_file": unit_path, "script": script_path}


def plan_unit_removal(plan: Plan, name: str) -> None:
    host = plan.host
    unit_path, script_path, link = _unit_paths(name)
    unit = host.read(unit_path)
    if host.exists(link):
        systemctl = host.which("systemctl")
        if systemctl:
            plan.command([systemctl, "disable", render.unit_name(name)], "disabling %s" % render.unit_name(name))
        else:
            plan.note("remove %s" % link, lambda: _write(host, link, None))
    if unit is not None and unit.startswith(render.MARK):
        plan.file(unit_path, None, rollback=False)
        if host.exists(SYSTEMD_RUNTIME_DIR) and host.which("systemctl"):
            plan.command([str(host.which("systemctl")), "daemon-reload"], "unloading %s" % render.unit_name(name))
    plan.file(script_path, None, rollback=False)
    plan.settle()


# -- bootconfig ------------------------------------------------------------------------


def _bootconfig_paths(name: str) -> tuple[str, str]:
    return "%s/%s.bconf" % (STATE_DIR, name), "%s/%s%s" % (HOOK_DIR, render.UNIT_PREFIX, name)


def _initrds(host: Host) -> list[str]:
    """The initrd of every kernel in /boot (initramfs-tools' and dracut's names)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(host.path(BOOT_DIR))):
            if not entry.startswith("vmlinuz-"):
                continue
            release = entry[len("vmlinuz-") :]
            for candidate in ("initrd.img-%s" % release, "initramfs-%s.img" % release):
                if host.exists("%s/%s" % (BOOT_DIR, candidate)):
                    found.append("%s/%s" % (BOOT_DIR, candidate))
                    break
    return found


def _hook_text(name: str, tool: str, tree_path: str) -> str:
    return "\n".join(
        [
            "#!/bin/sh",
            render.mark(name),
            "# update-initramfs runs this with the kernel version and the initrd it has just",
            "# written: attach the boot-time tracing bootconfig to it again.",
            '[ -n "${2:-}" ] && [ -f "$2" ] || exit 0',
            'exec %s -a %s "$2"' % (render.quote(tool), render.quote(tree_path)),
            "",
        ]
    )


def kernel_config(host: Host) -> dict | None:
    config, _source = _kernel.read_kconfig(host.release, host.path(BOOT_DIR), host.path(CONFIG_GZ))
    return config


def plan_bootconfig(plan: Plan, spec: Spec, old: dict | None, force: bool) -> tuple[dict, str, bool]:
    """(the state's `bootconfig` section, the tree's text, whether the kernel reads the
    bootconfig without `bootconfig` on its command line)."""
    host = plan.host
    config = kernel_config(host)
    if config is None or config.get("CONFIG_BOOT_CONFIG") != "y":
        raise PersistError(
            "backend=bootconfig: the running kernel (%s) %s; use backend unit"
            % (
                host.release,
                "was built without CONFIG_BOOT_CONFIG"
                if config is not None
                else "has no readable build configuration (%s, %s/config-%s)" % (CONFIG_GZ, BOOT_DIR, host.release),
            )
        )
    tool = host.which("bootconfig")
    if not tool:
        raise PersistError(
            "backend=bootconfig: the bootconfig tool is not installed (it is built from the "
            "kernel's tools/bootconfig; some distributions package it)"
        )
    tree = bootconfig.render(spec, parse_release(host.release))
    text = tree.text(spec.name)
    bootconfig.check_limits(tree, text)
    tree_path, hook_path = _bootconfig_paths(spec.name)
    initrds = _initrds(host)
    if not initrds:
        raise PersistError("backend=bootconfig: no initrd found in %s to attach the bootconfig to" % BOOT_DIR)
    replaced = dict((old or {}).get("replaced") or {})
    plan.file(tree_path, text, 0o644)
    plan.file(hook_path, _hook_text(spec.name, tool, tree_path), 0o755)
    plan.settle()
    for initrd in initrds:
        attached = bootconfig.read_attached(host.path(initrd))
        if attached == text:
            continue
        if attached is not None and not attached.startswith(render.mark(spec.name)) and initrd not in replaced:
            if not force:
                raise PersistError(
                    "%s already carries a bootconfig tracefleet did not attach (first line %r); "
                    "set force=true to replace it (teardown puts it back)" % (initrd, attached.split("\n", 1)[0])
                )
            replaced[initrd] = attached
        plan.diffs.append(
            {"before_header": initrd + " (bootconfig)", "after_header": initrd, "before": attached or "", "after": text}
        )
        if attached is not None:
            plan.command([tool, "-d", host.path(initrd)], "removing the bootconfig from %s" % initrd)
        plan.command([tool, "-a", host.path(tree_path), host.path(initrd)], "attaching the bootconfig to %s" % initrd)
    section = {"tree_file": tree_path, "hook": hook_path, "initrds": initrds, "replaced": replaced}
    return section, text, config.get("CONFIG_BOOT_CONFIG_FORCE") == "y"


def plan_bootconfig_removal(plan: Plan, name: str, old: dict) -> None:
    host = plan.host
    tool = host.which("bootconfig")
    tree_path, hook_path = _bootconfig_paths(name)
    # Those it was attached to, and any initrd written since (the hook attached it there).
    for initrd in sorted(set(old.get("initrds") or []) | set(_initrds(host))):
        if not host.exists(initrd):
            continue
        attached = bootconfig.read_attached(host.path(initrd))
        theirs = (old.get("replaced") or {}).get(initrd)
        ours = attached is not None and attached.startswith(render.mark(name))
        if not ours and theirs is None:
            continue
        if not tool:
            raise PersistError(
                "removing the bootconfig from %s needs the bootconfig tool, which is not installed" % initrd
            )
        plan.diffs.append(
            {
                "before_header": initrd + " (bootconfig)",
                "after_header": initrd,
                "before": attached or "",
                "after": theirs or "",
            }
        )
        if ours:
            plan.command([tool, "-d", host.path(initrd)], "removing the bootconfig from %s" % initrd)
        if theirs is not None:
            restore = "%s/%s.restore.bconf" % (STATE_DIR, name)
            plan.note("write %s" % restore, functools.partial(_write, host, restore, theirs, 0o600))
            plan.command(
                [tool, "-a", host.path(restore), host.path(initrd)], "putting back the bootconfig of %s" % initrd
            )
            plan.note("remove %s" % restore, functools.partial(_write, host, restore, None))
    plan.file(hook_path, None, rollback=False)
    plan.file(tree_path, None, rollback=False)
    plan.settle()


# -- the task ----------------------------------------------------------------------------


def choose_backend(spec: Spec, params: dict, host: Host) -> tuple[str, str, tuple | None]:
    """(backend, why, (bootloader, file) when the command line is used)."""
    wanted = params["backend"]
    release = parse_release(host.release)
    if wanted in ("unit", "bootconfig"):
        return wanted, "backend=%s was asked for" % wanted, None
    obstacles = cmdline_obstacles(spec, release)
    if wanted == "cmdline" and obstacles:
        raise PersistError(
            "backend=cmdline: %s; use backend unit (or auto, which picks it for this)" % "; ".join(obstacles)
        )
    if obstacles:
        more = " (and %d more)" % (len(obstacles) - 1) if len(obstacles) > 1 else ""
        return "unit", obstacles[0] + more, None
    try:
        loader = resolve_bootloader(host, params["bootloader"])
        _check_words(spec, render.cmdline_words(spec), loader[0])
    except PersistError as exc:
        if wanted == "cmdline" or params["bootloader"] != "auto":
            raise
        return "unit", str(exc), None
    if wanted == "cmdline":
        return "cmdline", "backend=cmdline was asked for", loader
    return "cmdline", "everything declared can be said on the kernel command line", loader


def _plan_present(plan: Plan, spec: Spec, params: dict, old: dict) -> tuple[dict, dict]:
    """Plan the setup; returns (the new state, the rendered texts for the result)."""
    host = plan.host
    force = params["force"]
    backend, reason, loader = choose_backend(spec, params, host)
    state = {
        "format": FORMAT,
        "name": spec.name,
        "session": params["session"],
        "backend": backend,
        "cmdline": None,
        "unit": None,
        "bootconfig": None,
    }
    shown: dict = {"backend": backend, "backend_reason": reason}
    if backend == "unit":
        state["unit"] = plan_unit(plan, spec, force)
        shown["unit_path"], shown["script_path"] = state["unit"]["unit_file"], state["unit"]["script"]
        shown["unit"] = render.unit_text(spec, state["unit"]["script"])
        shown["script"] = render.script_text(spec)
    elif old.get("unit"):
        plan_unit_removal(plan, spec.name)
    words: list[str] = []
    if backend == "bootconfig":
        state["bootconfig"], shown["tree"], forced = plan_bootconfig(plan, spec, old.get("bootconfig"), force)
        shown["tree_path"], shown["initrds"] = state["bootconfig"]["tree_file"], state["bootconfig"]["initrds"]
        if not forced:
            words = ["bootconfig"]
            loader = resolve_bootloader(host, params["bootloader"])
    elif old.get("bootconfig"):
        plan_bootconfig_removal(plan, spec.name, old["bootconfig"])
    if backend == "cmdline":
        words = render.cmdline_words(spec)
    forbidden = render.forbidden_words(spec) if backend == "cmdline" else []
    target = None
    if (words or forbidden) and loader is not None:
        target = (loader[0], loader[1], update_command(host, loader[0], params["boot_update_command"]))
    state["cmdline"] = plan_cmdline(plan, spec.name, target, words, forbidden, old.get("cmdline"), force)
    shown["cmdline_words"] = words
    if target is not None:
        shown["bootloader"], shown["cmdline_file"], shown["update_command"] = target
    shown["replaced_words"] = (state["cmdline"] or {}).get("replaced") or []
    return state, shown


def plan_removal(plan: Plan, name: str, old: dict) -> None:
    if old.get("unit"):
        plan_unit_removal(plan, name)
    if old.get("bootconfig"):
        plan_bootconfig_removal(plan, name, old["bootconfig"])
    plan_cmdline(plan, name, None, [], [], old.get("cmdline"), False)


def _union(old: dict, new: dict) -> dict:
    """The state to write before changing anything: everything the old and the new state
    own, so that an interrupted run leaves nothing unrecorded."""
    union = dict(new)
    for section in ("unit", "bootconfig"):
        union[section] = new.get(section) or old.get(section)
    old_cmdline, new_cmdline = old.get("cmdline"), new.get("cmdline")
    if old_cmdline and new_cmdline and old_cmdline["file"] == new_cmdline["file"]:
        merged = dict(new_cmdline)
        for key in ("words", "replaced"):
            merged[key] = new_cmdline[key] + [word for word in old_cmdline[key] if word not in new_cmdline[key]]
        union["cmdline"] = merged
    else:
        union["cmdline"] = new_cmdline or old_cmdline
    return union


def _describe(entry: dict) -> str:
    return "remove boot-time tracing %s (%s) from the next boot; %s" % (entry["name"], entry["backend"], REBOOT_NOTE)


def _undo(top: TracingDir | None, ledger: Ledger, entry: dict) -> str | None:
    host = this_host()
    name = entry["name"]
    old = read_state(host, name)
    if old is None:
        return "boot-time tracing %s had nothing left to remove (no %s)" % (name, state_file(name))
    plan = Plan(host)
    plan_removal(plan, name, old)
    plan.apply()
    _write(host, state_file(name), None)
    return None


LEDGER_KINDS = {"persist": LedgerKind(_describe, _undo, needs_tracefs=False, needs_reboot=True)}


def _json(state: dict) -> str:
    return json.dumps(state, indent=1, sort_keys=True) + "\n"


def _record(ledger: Ledger, session: str, name: str, backend: str) -> None:
    """The ledger's `persist` entry for the setup (one per name; its backend kept current)."""
    ledger.record(session, kind="persist", name=name, backend=backend, state_file=state_file(name))
    entry = ledger.find(kind="persist", name=name)
    if entry is not None and entry["backend"] != backend:
        ledger.update(entry, backend=backend)


def ensure(params: dict, check_mode: bool, diff: bool) -> dict:
    """The trace_persist task."""
    refuse_control_characters(params)
    host = this_host()
    try:
        name = validate_setup_name(params["name"])
        spec = build(params, host.tracing()) if params["state"] == "present" else None
    except PersistError as exc:
        raise TaskError("%s; nothing was changed" % exc) from None
    # The ledger's lock also serialises trace_persist runs (and teardown) on the host.
    with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
        try:
            old = read_state(host, name)
            plan = Plan(host)
            shown: dict = {"backend": old.get("backend") if old else None, "backend_reason": None}
            new_state = None
            if spec is not None:
                new_state, shown = _plan_present(plan, spec, params, old or {})
            elif old is not None:
                plan_removal(plan, name, old)
        except PersistError as exc:
            raise TaskError("name=%s: %s; nothing was changed" % (name, exc)) from None
        reboot_required = bool(plan.steps)
        # A setup whose words someone else already put there changes no boot, but is
        # recorded all the same.
        changed = reboot_required or (new_state is not None and old is None) or (new_state is None and old is not None)
        if changed and not check_mode:
            try:
                if new_state is not None:
                    _record(ledger, params["session"], name, new_state["backend"])
                    _write(host, state_file(name), _json(_union(old or {}, new_state)), 0o644)
                plan.apply()
                _write(host, state_file(name), _json(new_state) if new_state else None, 0o644)
            except PersistError as exc:
                raise TaskError("name=%s: %s" % (name, exc), changes=plan.changes) from None
            if new_state is None:
                ledger.forget_if_present(kind="persist", name=name)
    result = dict(
        changed=changed,
        reboot_required=reboot_required,
        state_file=state_file(name) if new_state else None,
        changes=plan.changes,
        backend=shown.get("backend"),
        backend_reason=shown.get("backend_reason"),
        cmdline_words=shown.get("cmdline_words", []),
        bootloader=shown.get("bootloader"),
        cmdline_file=shown.get("cmdline_file"),
        update_command=shown.get("update_command"),
        replaced_words=shown.get("replaced_words", []),
        unit_path=shown.get("unit_path"),
        unit=shown.get("unit"),
        script_path=shown.get("script_path"),
        script=shown.get("script"),
        tree_path=shown.get("tree_path"),
        tree=shown.get("tree"),
        initrds=shown.get("initrds", []),
    )
    if plan.warnings:
        result["warnings"] = plan.warnings
    if diff:
        result["diff"] = plan.diffs
    return result

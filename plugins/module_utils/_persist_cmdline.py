# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The next boot's kernel command line, as the boot loader's configuration holds it:
`/etc/kernel/cmdline` (kernel-install, systemd-boot, UKIs) or the value of
`GRUB_CMDLINE_LINUX` in `/etc/default/grub`. Text in, text out.

Only words are added and removed; every other byte of the file stays as it was
(the file is read as bytes and decoded with `surrogateescape`, like the fstab). A word
is added before a bare `--` (what follows it is init's) or after the last word, with
one space, and removed with the space before it, so adding and then removing a word
gives back the original text.

Which parameters keep only their last occurrence (kernel/trace/trace.c,
trace_events.c and trace_kprobe.c copy each into one buffer): trace_event=,
trace_options=, trace_clock=, trace_buf_size= and kprobe_event=. A word of one of
these that tracefleet did not add is someone else's setting, and adding ours would
silently replace it (`conflicts`). trace_instance= accumulates, one instance per
word, so only a word for the same instance conflicts.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import PersistError

SINGLE_VALUED = ("trace_event", "trace_options", "trace_clock", "trace_buf_size", "kprobe_event")
# Flags whose presence is the setting (tracing_on=false; bootconfig).
FLAGS = ("traceoff_after_boot", "bootconfig")
GRUB_VARIABLE = "GRUB_CMDLINE_LINUX"
# x86's COMMAND_LINE_SIZE (also arm64's and most others'), its last byte the NUL.
COMMAND_LINE_SIZE = 2048
ENCODING = "utf-8"
ERRORS = "surrogateescape"
_TOKENS = re.compile(r"\s+|\S+")
# The kernel splits the command line at spaces and honours double quotes; '#' starts a
# comment in the files boot loaders read. GRUB's grub.cfg is a script of its own, where
# these start an expansion, end a command or group words.
_KERNEL_UNSAFE = set("\"'#\\")
_GRUB_UNSAFE = set("$;&|<>(){}`")
_GRUB_LINE = re.compile(
    r"(?P<lead>[ \t]*(?:export[ \t]+)?%s=)(?P<value>\"[^\"\\$`]*\"|'[^']*'|[^\s\"'\\$`#;]*)"
    r"(?P<rest>[ \t]*(?:#.*)?)" % GRUB_VARIABLE
)


class CmdlineError(PersistError):
    """A command line tracefleet cannot or will not edit; nothing was written."""


def key(word: str) -> str:
    return word.split("=", 1)[0]


def unsafe(word: str, bootloader: str) -> str | None:
    """Why `word` cannot be one word of the next boot's command line, or None."""
    for index, char in enumerate(word):
        if not ("!" <= char <= "~"):
            return "%r at position %d is not printable ASCII, or splits the word" % (char, index)
        if char in _KERNEL_UNSAFE:
            return "%r at position %d is a quote, a comment or an escape on a kernel command line" % (char, index)
        if bootloader == "grub" and char in _GRUB_UNSAFE:
            return (
                "%r at position %d would be read by GRUB's script parser in grub.cfg "
                "(an expansion, a command separator or a group)" % (char, index)
            )
    return None


def words_of(text: str) -> list[str]:
    """The kernel's words in `text`, up to a bare `--`."""
    found = []
    for token in _TOKENS.findall(text):
        if token.isspace():
            continue
        if token == "--":
            break
        found.append(token)
    return found


def edit(text: str, remove: list[str], add: list[str]) -> str:
    """`text` without every occurrence of the words in `remove`, then with `add`."""
    tokens = _TOKENS.findall(text)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.isspace() or token not in remove:
            index += 1
            continue
        if index > 0 and tokens[index - 1].isspace():
            del tokens[index - 1 : index + 1]
            index -= 1
        elif index + 1 < len(tokens) and tokens[index + 1].isspace() and "\n" not in tokens[index + 1]:
            del tokens[index : index + 2]
        else:
            del tokens[index]
    if add:
        words = " ".join(add)
        if "--" in tokens:
            tokens.insert(tokens.index("--"), words + " ")
        else:
            last = max((i for i, token in enumerate(tokens) if not token.isspace()), default=None)
            if last is None:
                tokens.insert(0, words)
            else:
                tokens.insert(last + 1, " " + words)
    return "".join(tokens)


def conflicts(present: list[str], owned: list[str], wanted: list[str], forbidden: list[str]) -> list[str]:
    """Words in `present` that tracefleet does not own (`owned`) and that would fight
    `wanted`: another value of a single-valued parameter we set, another word for an
    instance we create, or a flag in `forbidden` (such as traceoff_after_boot when
    tracing_on is to stay on)."""
    wanted_keys = {key(word) for word in wanted if key(word) in SINGLE_VALUED}
    instances = {word.split("=", 1)[1].split(",", 1)[0] for word in wanted if key(word) == "trace_instance"}
    found = []
    for word in present:
        if word in owned or word in wanted:
            continue
        same_instance = key(word) == "trace_instance" and word.partition("=")[2].split(",", 1)[0] in instances
        if key(word) in wanted_keys or word in forbidden or same_instance:
            found.append(word)
    return found


class CmdlineFile:
    """The part of a boot loader's file that holds the command line: the whole of
    /etc/kernel/cmdline, or the value of GRUB_CMDLINE_LINUX in /etc/default/grub."""

    def __init__(self, bootloader: str, path: str, text: str) -> None:
        self.bootloader = bootloader
        self.path = path
        self.text = text
        # GRUB: (text before the value, the value as written with its quotes, text after).
        self._grub = _grub_value(path, text) if bootloader == "grub" else None

    @property
    def value(self) -> str:
        """The command line's text: the file, or GRUB's value without its quotes."""
        if self._grub is None:
            return self.text
        quoted = self._grub[1]
        return quoted[1:-1] if quoted[:1] in ("'", '"') else quoted

    def words(self) -> list[str]:
        return words_of(self.value)

    def edited(self, remove: list[str], add: list[str]) -> str:
        """The file's new text with the words removed and added (the same text, byte for
        byte, when that changes no word)."""
        value = edit(self.value, remove, add)
        if value == self.value:
            return self.text
        length = len(" ".join(words_of(value)))
        if length >= COMMAND_LINE_SIZE:
            raise CmdlineError(
                "%s: the command line would be %d characters, more than the kernel takes (%d)"
                % (self.path, length, COMMAND_LINE_SIZE - 1)
            )
        if self._grub is None:
            return value
        before, quoted, after = self._grub
        quote = quoted[:1] if quoted[:1] in ("'", '"') else ('"' if re.search(r"\s", value) else "")
        return before + quote + value + quote + after


def _grub_value(path: str, text: str) -> tuple[str, str, str]:
    """(text before the value, the value as written, text after it) of the one
    GRUB_CMDLINE_LINUX assignment; a file without one gets one at its end."""
    lines = text.split("\n")
    found = []
    for number, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        if stripped.startswith("export"):
            stripped = stripped[len("export") :].lstrip(" \t")
        if stripped.startswith(GRUB_VARIABLE + "="):
            found.append(number)
    if len(found) > 1:
        raise CmdlineError(
            "%s assigns %s on lines %s; tracefleet edits one plain assignment only: merge them into one"
            % (path, GRUB_VARIABLE, ", ".join(str(number + 1) for number in found))
        )
    if not found:
        prefix = text if text.endswith("\n") or not text else text + "\n"
        return prefix + GRUB_VARIABLE + "=", '""', "\n"
    number = found[0]
    match = _GRUB_LINE.fullmatch(lines[number])
    if match is None:
        raise CmdlineError(
            "%s line %d: %r is not a one-line value without shell expansions ($, `, \\); "
            "tracefleet edits only such a value" % (path, number + 1, lines[number])
        )
    before = "".join(line + "\n" for line in lines[:number]) + match.group("lead")
    after = match.group("rest") + "".join("\n" + line for line in lines[number + 1 :])
    return before, match.group("value"), after


def read(path: str) -> str | None:
    """The file's text (bytes that are not UTF-8 kept as surrogate escapes), or None."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(ENCODING, ERRORS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CmdlineError("cannot read %s: %s" % (path, exc)) from None

"""Exit codes of `relaypacs upload`, `status` and `watch` (stable; scripts branch on them).

====  =====================================================================================
code  meaning
====  =====================================================================================
0     every study was uploaded (and, with ``--wait``, delivered to the PACS, every file)
1     unexpected error (a bug or an unusable local file); the message says which
2     wrong usage (unknown option, missing argument, bad server URL)
3     at least one study was skipped because the server already has it (answer the
      prompt or pass ``--force`` to send it again)
4     not signed in, or the sign-in expired: run ``relaypacs login``
5     no DICOM file was found in the given paths
6     the server refused a study (bad metadata, too large, rejected as non-DICOM)
7     gave up: no progress for longer than ``--give-up-after``; run the same command
      again to resume where it stopped (``status``: the server did not answer for that
      long, 30 s unless given)
8     ``--wait`` (and ``status``): a study ended ``rejected``, ``failed``,
      ``partially_delivered``, ``cancelled`` or ``expired`` instead of ``delivered``
9     ``--wait``: the wait timed out before the study was delivered (it may still be)
10    ``--wait`` (and ``status``): the study was delivered, but N files (or ZIP entries) were
      left out as invalid; the output names each with the gateway's reason (``--json``:
      ``left_out``). A DICOMDIR, an index and not an instance, is never left out.
130   interrupted (Ctrl-C); run the same command again to resume
====  =====================================================================================

When several studies end differently, the highest code wins, except that 130 always wins and
10 yields to every other failure (it is the only one whose study reached the PACS).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    DUPLICATE_SKIPPED = 3
    NOT_SIGNED_IN = 4
    NOTHING_TO_UPLOAD = 5
    REFUSED = 6
    GAVE_UP = 7
    NOT_DELIVERED = 8
    WAIT_TIMED_OUT = 9
    FILES_LEFT_OUT = 10
    INTERRUPTED = 130


def worst(codes: list[ExitCode]) -> ExitCode:
    if ExitCode.INTERRUPTED in codes:
        return ExitCode.INTERRUPTED
    # Numbered after the others, but milder than any of them: its study was delivered.
    failures = [c for c in codes if c not in (ExitCode.OK, ExitCode.FILES_LEFT_OUT)]
    if failures:
        return max(failures)
    return ExitCode.FILES_LEFT_OUT if ExitCode.FILES_LEFT_OUT in codes else ExitCode.OK

"""Store Instances status codes: what each FailureReason / WarningReason means, and whether a
retry can help.

Sources: PS3.18 Annex I.2 (Store Instances Response: Warning Reason (0008,1196) and Failure
Reason (0008,1197)), PS3.4 B.2.3 (C-STORE statuses) and PS3.7 C.4 (general DIMSE statuses),
which STOW-RS origin servers reuse; and the codes dcm4chee-arc puts in that standard's A7xx
range for refusals of its own (see ``_DCM4CHEE``). Exact codes are looked up first, then the
ranges the standard defines (A7xx, A9xx, Cxxx, Bxxx).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StatusCategory(StrEnum):
    success = "success"
    warning = "warning"  # stored, with a remark
    transient = "transient"  # not stored; sending again later can succeed
    permanent = "permanent"  # not stored; sending again cannot help


@dataclass(frozen=True)
class StoreStatus:
    code: int
    category: StatusCategory
    meaning: str

    @property
    def stored(self) -> bool:
        return self.category in (StatusCategory.success, StatusCategory.warning)

    def describe(self) -> str:
        return f"0x{self.code:04X} {self.meaning}"


_S = StatusCategory
_EXACT: dict[int, tuple[StatusCategory, str]] = {
    0x0000: (_S.success, "Success"),
    # PS3.18 I.2.1 Warning Reason
    0xB000: (_S.warning, "Coercion of data elements"),
    0xB006: (_S.warning, "Elements discarded"),
    0xB007: (_S.warning, "Data set does not match SOP class"),
    0x0107: (_S.warning, "Attribute list error"),
    0x0116: (_S.warning, "Attribute value out of range"),
    # PS3.18 I.2.2 Failure Reason
    0x0110: (_S.transient, "Processing failure"),
    0x0122: (_S.permanent, "Referenced SOP class not supported"),
    0xC122: (_S.permanent, "Referenced transfer syntax not supported"),
    # PS3.7 C.4 general statuses seen in STOW-RS responses
    # An instance the destination already holds: delivering it again is what a retry after a
    # lost response looks like, so it counts as stored (with this remark).
    0x0111: (_S.warning, "Duplicate SOP instance (already stored)"),
    0x0117: (_S.permanent, "Invalid SOP instance"),
    0x0124: (_S.permanent, "Refused: not authorized"),
    0x0210: (_S.transient, "Duplicate invocation"),
    0x0211: (_S.permanent, "Unrecognized operation"),
    0x0212: (_S.permanent, "Mistyped argument"),
    0x0213: (_S.transient, "Resource limitation"),
}

# dcm4chee-arc answers its own policy refusals with codes inside the standard's "out of
# resources" range, so the range alone would have the gateway send them again for days: each
# is a decision about the instance (or its patient or study) that another attempt meets again.
# Codes and meanings: dcm4chee-arc-light, dcm4chee-arc-store/src/main/java/org/dcm4chee/arc/
# store/StoreService.java (DUPLICATE_REJECTION_NOTE 0xA770 .. CONFLICTING_PATIENT_ATTRS_REJECTED
# 0xA779, with their *_MSG texts). Its STOW-RS service (dcm4chee-arc-stow, StowRS.java) puts the
# code as FailureReason in FailedSOPSequence, and answers 409 when nothing was stored. These
# exact codes are read as dcm4chee-arc's whatever the server: no other is known to use them.
_DCM4CHEE: dict[int, tuple[StatusCategory, str]] = {
    0xA770: (_S.permanent, "Refused by dcm4chee-arc: rejection note already received"),
    0xA771: (_S.permanent, "Refused by dcm4chee-arc: subsequent occurrence of a rejected object"),
    0xA772: (_S.permanent, "Refused by dcm4chee-arc: rejection failed, no such instance"),
    0xA773: (_S.permanent, "Refused by dcm4chee-arc: rejection failed, class-instance conflict"),
    0xA774: (_S.permanent, "Refused by dcm4chee-arc: rejection failed, already rejected"),
    0xA775: (
        _S.permanent,
        "Refused by dcm4chee-arc: rejection for retention policy expired not allowed",
    ),
    0xA776: (_S.permanent, "Refused by dcm4chee-arc: retention period of study not yet expired"),
    0xA777: (_S.permanent, "Refused by dcm4chee-arc: patient ID missing in object"),
    0xA778: (
        _S.permanent,
        "Refused by dcm4chee-arc: patient ID differs from earlier objects of the study",
    ),
    0xA779: (
        _S.permanent,
        "Refused by dcm4chee-arc: patient attributes differ from earlier objects",
    ),
}
_EXACT.update(_DCM4CHEE)

_RANGES: tuple[tuple[int, int, StatusCategory, str], ...] = (
    (0xA700, 0xA7FF, _S.transient, "Refused: out of resources"),
    (0xA900, 0xA9FF, _S.permanent, "Error: data set does not match SOP class"),
    (0xC000, 0xCFFF, _S.permanent, "Error: cannot understand"),
    (0xB000, 0xBFFF, _S.warning, "Warning"),
)


def store_status(code: int) -> StoreStatus:
    """The meaning of a Store Instances status code; unknown failures count as permanent
    (the destination refused that instance for a reason of its own)."""
    exact = _EXACT.get(code)
    if exact is not None:
        return StoreStatus(code, *exact)
    for low, high, category, meaning in _RANGES:
        if low <= code <= high:
            return StoreStatus(code, category, meaning)
    return StoreStatus(code, _S.permanent, "Refused (status not defined by the standard)")


def parse_status_code(value: object) -> int | None:
    """A US value from DICOM JSON: a number (standard) or a hex string (some servers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 0xFFFF else None
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0x")
        try:
            code = int(text, 16)
        except ValueError:
            return None
        return code if 0 <= code <= 0xFFFF else None
    return None

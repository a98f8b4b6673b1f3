"""The order jobs are claimed in: a ready study first, by service level; early work last."""

from __future__ import annotations

from relaypacs.uploads.overlap import EARLY_PRIORITY
from relaypacs.uploads.service import PRIORITY_BY_SERVICE_LEVEL


def test_early_work_never_goes_before_a_study_that_is_ready() -> None:
    assert max(EARLY_PRIORITY.values()) < min(PRIORITY_BY_SERVICE_LEVEL.values())


def test_early_work_keeps_the_service_levels_order() -> None:
    def by(priorities: dict[object, int]) -> list[object]:
        return sorted(priorities, key=priorities.__getitem__)

    assert by(dict(EARLY_PRIORITY)) == by(dict(PRIORITY_BY_SERVICE_LEVEL))

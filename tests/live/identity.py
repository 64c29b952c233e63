"""Airflow's `hostname_callable` for the live test: each Celery worker plays a machine of its own.

In production every worker runs on its own host, so the hostname Airflow records on a task
instance tells which worker ran it. The live test runs two workers on one machine; each gets
`CHROMA_LIVE_HOSTNAME` in its environment, and the task processes it starts inherit it.
"""

from __future__ import annotations

import os
import socket

HOSTNAME_ENV = "CHROMA_LIVE_HOSTNAME"


def hostname() -> str:
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()

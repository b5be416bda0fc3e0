"""Airflow's ``[core] hostname_callable`` for several Celery workers on one machine.

Airflow records, per task instance, the host its task ran on (``task_instance.hostname``, what the
grid shows as "Host"), from the callable ``[core] hostname_callable``; by default the machine's
FQDN, which two workers on one machine share. The CeleryExecutor test starts each worker with its
own ``CIVIC_WORKER_HOSTNAME`` (the name it also gives Celery with ``--celery-hostname``) so the
metadata database tells which worker ran what, as it does on separate machines or pods.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("CIVIC_WORKER_HOSTNAME") or socket.getfqdn()

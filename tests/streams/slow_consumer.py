"""`postsale consume` with a pause after each commit, before the acknowledgement: a test can
stop or kill the consumer while it holds entries the database already took.

    SLOW_INGEST_SECONDS   the pause (default 0.3)
    SLOW_INGEST_PROGRESS  a file that holds the number of commits so far
"""
from __future__ import annotations

import os
import sys
import time

from cli.main import main
from adapters.store.events import EventStore

DELAY = float(os.environ.get("SLOW_INGEST_SECONDS", "0.3"))
PROGRESS = os.environ.get("SLOW_INGEST_PROGRESS")
_ingest = EventStore.ingest
_commits = 0


def slow_ingest(self, events):
    global _commits
    result = _ingest(self, events)
    _commits += 1
    if PROGRESS:
        with open(PROGRESS + ".tmp", "w") as f:
            f.write(str(_commits))
        os.replace(PROGRESS + ".tmp", PROGRESS)
    time.sleep(DELAY)
    return result


EventStore.ingest = slow_ingest

if __name__ == "__main__":
    sys.exit(main())

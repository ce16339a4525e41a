"""Loaded by every Python process started with this folder on PYTHONPATH: watches, through Python's
audit hooks, the file events of the process under ``$ADMAP_FILE_EVENTS_UNDER`` (every folder when
unset): files opened for writing, renames, removals, folders made and removed, and the lookup of ``renameat2``
right before an atomic exchange. Then:

- ``ADMAP_FILE_EVENTS_LOG=DIR``: each event, with the process's rank, goes to ``DIR/<pid>.jsonl`` at exit;
- ``ADMAP_FILE_EVENTS_KILL_AT=K``: the process kills itself (SIGKILL, no clean-up) at its K-th event,
  before the event takes effect;
- ``ADMAP_FILE_EVENTS_PAUSE_AT=K``: it sleeps ``ADMAP_FILE_EVENTS_PAUSE_S`` seconds at its K-th event.

The fault-injection and one-writer tests start `admap map` and `admap_experiments.run` this way."""

import atexit
import json
import os
import signal
import sys
import time

UNDER = os.environ.get("ADMAP_FILE_EVENTS_UNDER", "")
LOG_DIR = os.environ.get("ADMAP_FILE_EVENTS_LOG")
KILL_AT = int(os.environ.get("ADMAP_FILE_EVENTS_KILL_AT", "0"))
PAUSE_AT = int(os.environ.get("ADMAP_FILE_EVENTS_PAUSE_AT", "0"))
PAUSE_S = float(os.environ.get("ADMAP_FILE_EVENTS_PAUSE_S", "0"))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

if LOG_DIR or KILL_AT or PAUSE_AT:
    events: list[dict] = []

    def watched(path) -> str | None:
        try:
            path = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return None
        return path if path.startswith(UNDER) else None

    def seen(kind: str, path: str) -> None:
        events.append({"rank": os.environ.get("RANK", "0"), "event": kind, "path": path})
        if len(events) == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        if len(events) == PAUSE_AT:
            time.sleep(PAUSE_S)

    def on_event(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            if any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS):
                if path := watched(path):
                    seen("write", path)
        elif event == "os.rename":  # os.rename and os.replace: a file or folder published under a new name
            if (path := watched(args[1])) or watched(args[0]):
                seen("rename", path or watched(args[0]))
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"):
            if path := watched(args[0]):
                seen(event.split(".")[1], path)
        elif event == "ctypes.dlsym" and args[1] == "renameat2":  # looked up right before the exchange
            seen("exchange", "")

    def write_log():
        if LOG_DIR:
            with open(os.path.join(LOG_DIR, f"{os.getpid()}.jsonl"), "w") as log:
                log.writelines(json.dumps(event) + "\n" for event in events)

    sys.addaudithook(on_event)
    atexit.register(write_log)

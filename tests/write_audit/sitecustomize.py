"""Loaded by every Python process started with this folder on PYTHONPATH (the distributed training
test's `accelerate launch`): records each file a process opens for writing or renames into place, with its rank, through
Python's audit hooks, to ``$ADMAP_WRITE_AUDIT/<pid>.jsonl`` at exit."""

import atexit
import json
import os
import sys

AUDIT_DIR = os.environ.get("ADMAP_WRITE_AUDIT")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

if AUDIT_DIR:
    opened: list[dict] = []

    def record(path) -> None:
        opened.append({"rank": os.environ.get("RANK", "0"), "path": os.path.abspath(os.fsdecode(path))})

    def record_writes(event, args):
        if event == "os.rename":  # os.rename and os.replace: a file published under its final name
            record(args[1])
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            if any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS):
                record(path)

    def write_log():
        with open(os.path.join(AUDIT_DIR, f"{os.getpid()}.jsonl"), "w") as log:
            log.writelines(json.dumps(entry) + "\n" for entry in opened)

    sys.addaudithook(record_writes)
    atexit.register(write_log)

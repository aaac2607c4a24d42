"""A worker on another machine, from the bundle `hearth enroll my-laptop` wrote.

    python worker.py my-laptop.hearth
"""

import hashlib
import sys

import hearth


def shout(ctx: hearth.JobContext) -> str:
    text = ctx.payload.decode() if isinstance(ctx.payload, bytes) else str(ctx.payload)
    return text.upper()


def checksum(ctx: hearth.JobContext) -> str:
    return hashlib.sha256(ctx.payload_bytes).hexdigest()


if __name__ == "__main__":
    bundle = sys.argv[1] if len(sys.argv) > 1 else "my-laptop.hearth"
    hearth.run_worker(bundle, {"shout": shout, "checksum": checksum})

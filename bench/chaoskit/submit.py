"""The chaos run's submitter, started as ``bench/chaos.py _submit`` on the coordinator's
host: a steady load, caught up after an outage, sent again safely after a lost answer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.chaoskit.plan import KIND


def submit_main(argv: list[str]) -> int:
    """Submit ``--jobs`` jobs at ``--rate`` per second (catching up after an outage), in
    batches with idempotency keys so a batch whose answer was lost is safely sent again;
    append each acknowledged id to ``--out``."""
    from hearth.client import Client
    from hearth.errors import HearthError, Unavailable

    parser = argparse.ArgumentParser(prog="chaos.py _submit")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token")
    parser.add_argument("--bundle")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--max-attempts", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    token = Path(args.token).read_text().strip() if args.token else None
    backoff = {"initial": 0.1, "max": 1.0, "multiplier": 2.0, "jitter": 0.2}
    done = retries = 0
    with Client(args.url, token=token, bundle=args.bundle, timeout=5.0) as client, \
            open(args.out, "a") as out:
        start = time.monotonic()
        while done < args.jobs:
            due = min(args.jobs, int((time.monotonic() - start) * args.rate) + 1)
            if due <= done:
                time.sleep(max(0.0, start + done / args.rate - time.monotonic()))
                continue
            numbers = range(done, min(due, done + 200))
            specs = [{"kind": KIND, "payload": n, "idempotency_key": f"chaos-{n}",
                      "lease_ttl": args.lease_ttl, "max_attempts": args.max_attempts,
                      "backoff": backoff} for n in numbers]
            try:
                answered = client.submit_many(specs)
            except HearthError as exc:
                retries += 1
                if not isinstance(exc, Unavailable) and exc.status < 500:
                    raise
                time.sleep(0.05)
                continue
            now = time.time()
            out.write("".join(f"{job.id} {now:.6f}\n" for job in answered))
            out.flush()
            done = numbers[-1] + 1
    print(f"submitted {done} jobs, {retries} batches sent again", flush=True)
    return 0

"""PIN brute force: the sustained guess rate an attacker gets, and the expected time to find a
random 6-digit PIN, under each connection pattern found (issue 16); prints, asserts nothing.

The daemon's own code decides (gatt.security.Guard with its Lockout, restored from its saved
document at each simulated restart, exactly as gatt/service.py does); only time is simulated,
so a month takes seconds.  The attacker tries once every simulated second (a try that is
refused costs it nothing, and changes nothing, so the simulation skips from one try that can
be evaluated to the next) and never knows the PIN; the owner's phone, where present, logs in
with the right PIN every ``--owner-every`` seconds.  An evaluated wrong PIN is a guess; the
expected brute-force time of a uniformly random PIN is 500 000 guesses at the measured rate.

Patterns:
  lone          one central, a connection per guess
  churn         a new address for every try (no per-central lock-out ever applies)
  owner         churn, riding the owner's logins (which used to reset the counter)
  restarts      churn, the daemon restarted (state reloaded) after every evaluated guess
  everything    churn + owner + restarts + 7 centrals at once

The real daemon on the virtual BlueZ gets the same (tests/ble/test_attacker.py checks the
budget over D-Bus with churn, the owner and restarts).

Usage: .venv/bin/python benchmarks/bench_bruteforce.py [--days 14] [--owner-every 60]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import time

from gatt import security
from gatt.security import AuthError, Guard, Lockout, answer_challenge, decode_challenge

PIN = "482913"
SECONDS_PER_YEAR = 365.25 * 86_400
EXPECTED_GUESSES = (10**6 + 1) / 2  # a uniformly random 6-digit PIN


def run(pattern: str, days: float, owner_every: float) -> tuple[int, float]:
    """(wrong PINs evaluated, simulated seconds)."""
    guard = Guard(pin=PIN, salt=b"s" * 16, iterations=1)
    addresses = itertools.count()
    centrals = 7 if pattern == "everything" else 1
    churn = pattern != "lone"
    owner = pattern in ("owner", "everything")
    restarts = pattern in ("restarts", "everything")
    end = days * 86_400.0
    now, next_owner, evaluated = 0.0, owner_every, 0
    while now < end:
        for c in range(centrals):
            device = f"attacker{next(addresses)}" if churn else f"attacker{c}"
            response, _ = answer_challenge("000000", decode_challenge(guard.challenge(now)))
            try:
                guard.authenticate(response, now, device=device)
            except AuthError as err:
                if err.kind == AuthError.WRONG_PIN:
                    evaluated += 1
                    if restarts:  # what a restart keeps: the saved document
                        guard.lockout = Lockout.from_document(guard.lockout.document(), now)
        if owner and now >= next_owner:
            next_owner += owner_every
            right, _ = answer_challenge(PIN, decode_challenge(guard.challenge(now)))
            # locked out like everyone, at times: the denial of service docs/security.md accepts
            with contextlib.suppress(AuthError):
                guard.authenticate(right, now, device="owner")
        # the next whole second at which a try can be evaluated (tries before it are refused
        # without any change of state)
        wait = guard.lockout.wait("attacker-next" if churn else "attacker0", now + 1.0)
        step = 1.0 + math.ceil(wait)
        if owner:
            step = min(step, max(1.0, next_owner - now))
        now += step
    return evaluated, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--owner-every", type=float, default=60.0)
    args = parser.parse_args()
    print(f"limits: {security.FREE_ATTEMPTS} wrong PINs at once, then one per "
          f"{security.GLOBAL_INTERVAL_S:g} s for all centrals; per central "
          f"{security.FIRST_LOCKOUT_S:g} s doubling to {security.MAX_LOCKOUT_S:g} s")
    print(f"{'pattern':<12} {'guesses':>8} {'per hour':>9} {'per day':>8} "
          f"{'expected time to a random PIN':>30}")
    worst = 0.0
    for pattern in ("lone", "churn", "owner", "restarts", "everything"):
        t0 = time.perf_counter()
        guesses, seconds = run(pattern, args.days, args.owner_every)
        rate = guesses / seconds
        worst = max(worst, rate)
        years = EXPECTED_GUESSES / rate / SECONDS_PER_YEAR
        print(f"{pattern:<12} {guesses:>8} {rate * 3600:>9.2f} {rate * 86_400:>8.1f} "
              f"{years:>24.2f} years  ({time.perf_counter() - t0:.1f} s to simulate "
              f"{args.days:g} days)")
    print(f"worst pattern: {worst * 3600:.2f} guesses/hour -> a random 6-digit PIN lasts "
          f"{EXPECTED_GUESSES / worst / SECONDS_PER_YEAR:.2f} years on average")


if __name__ == "__main__":
    main()

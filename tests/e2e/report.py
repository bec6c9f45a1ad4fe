"""The e2e verdict: reads the guests' result files and prints one line per check.

Exit 0 only when every case of the run left results from each of its guests and every check
passed; a case with no results means a guest died or timed out (its logs are kept by run.sh).
The second argument lists the cases with their guests: ``probe:periph+central,gpio:gpio``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run: Path, cases: dict[str, list[str]]) -> int:
    failed = uncovered = 0
    for case, roles in cases.items():
        print(f"case {case}:")
        for role in roles:
            if not (run / "results" / f"{case}.{role}.json").exists():
                print(f"  FAIL [{role}] no results: the guest did not get to this case")
                failed += 1
        for path in sorted((run / "results").glob(f"{case}.*.json")):
            data = json.loads(path.read_text())
            role = data["role"]
            for check in data["checks"]:
                mark = "ok  " if check["ok"] else "FAIL"
                failed += 0 if check["ok"] else 1
                print(f"  {mark} [{role}] {check['name']}: {check['detail']}")
            for item in data["not_covered"]:
                uncovered += 1
                print(f"  n/c  [{role}] {item['name']}: not yet covered ({item['why']})")
            for name, value in data["facts"].items():
                print(f"  fact [{role}] {name} = {value}")
            if not data["checks"] and not data["not_covered"]:
                print(f"  FAIL [{role}] no check ran")
                failed += 1
    also = f" ({uncovered} step(s) not covered: see n/c above)" if uncovered else ""
    print(f"{failed} failed check(s){also}" if failed else f"all checks passed{also}")
    return 1 if failed else 0


if __name__ == "__main__":
    spec = (item.partition(":") for item in sys.argv[2].split(",") if item)
    sys.exit(main(Path(sys.argv[1]), {case: roles.split("+") for case, _, roles in spec}))

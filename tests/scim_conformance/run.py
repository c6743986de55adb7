"""Runs scim2-tester (PyPI, "Check SCIM RFCs server compliance") against a running bridge's /scim/v2.

Usage: run.py BASE_URL TOKEN REPORT_JSON

Every check scim2-tester makes is printed with its status and reason, and written to REPORT_JSON. The run
fails when any check ends in ERROR or CRITICAL, unless the check is listed in EXPECTED below with the reason
the bridge answers as it does. The tests in tests/api/scim_conformance.rs run this and keep the list honest:
an expected failure that starts to pass fails the run too, so the list cannot go stale.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

# Checks that fail on purpose: title -> why. Empty when the bridge passes everything.
EXPECTED: dict[str, str] = {}

FAILING = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    base, token, report_path = sys.argv[1], sys.argv[2], sys.argv[3]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    client = SyncSCIMClient(http)
    results = check_server(client)
    rows = []
    unexpected = []
    stale = set(EXPECTED)
    for r in results:
        name = f"{r.resource_type + ' ' if r.resource_type else ''}{r.title}"
        rows.append({"check": name, "status": r.status.name, "reason": r.reason or ""})
        print(f"{r.status.name:<10} {name}{': ' + r.reason if r.reason else ''}")
        if r.status in FAILING:
            if name in EXPECTED:
                stale.discard(name)
            else:
                unexpected.append(name)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump({"counts": counts, "checks": rows}, f, indent=1)
    print("summary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if unexpected:
        print("unexpected failures:", ", ".join(unexpected))
    if stale:
        print("expected failures that now pass (remove them from EXPECTED):", ", ".join(sorted(stale)))
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""One worker process for tests/service/test_capacity.py: decides `n` accounts through the
decide use case (recorded, no inline dispatch) and prints how many got an optional CSM touch."""
from __future__ import annotations

import copy
import json
import sys


def main(n: int, offset: int, facts_file: str) -> None:
    from config.settings import from_env
    from service.bootstrap import bootstrap
    from service.decide import DecideCommand, decide
    template = json.loads(open(facts_file, encoding="utf-8").read())
    rt = bootstrap(from_env(), redis=None)
    touched = 0
    try:
        for i in range(n):
            facts = copy.deepcopy(template)
            facts["account"]["id"] = f"cap-{offset + i:05d}"
            facts["account"]["arr"] = 40_000 + 500 * ((offset + i) % 97)
            body = decide(rt, DecideCommand(facts=facts)).body
            touched += any(e.get("rule") == "choose" for e in body["escalations"])
    finally:
        rt.close()
    print(json.dumps({"touched": touched}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

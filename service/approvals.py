"""The approval use cases, for the JSON API and the console alike: the approvers' queue, one
item, and the verdicts that release or cancel a held decision's actions.

The verdicts' work (one conditional transition, the outbox rows, the events) is in
adapters/store/approvals.py, whose refusals (ApprovalError) reach the caller unchanged. An
approval then runs the released actions inline within the decision's budget
(POSTSALE_INLINE_DISPATCH_MS): on the embedded default, where no worker runs, what was approved
happens at once; what the budget leaves is for `postsale worker`.
"""
from __future__ import annotations

import logging

from adapters.dispatch.inline import dispatch_decision
from adapters.store.approvals import ApprovalStore, RecordedFlows, escalation_target

log = logging.getLogger("postsale.approvals")


class Approvals:
    def __init__(self, rt):
        def live(name):
            d = rt.decider(name)
            return d.flow if d is not None else None

        self.rt = rt
        self.store = ApprovalStore(rt.factory, flows=RecordedFlows(rt.factory, live=live),
                                   escalate_to=escalation_target(rt.settings), settings=rt.settings)

    def list(self, state: str | None = "pending", queue: str | None = None, limit: int = 50,
             after: str | None = None, account: str | None = None) -> list[dict]:
        return self.store.list(state, queue, limit, after, account=account)

    def get(self, approval_id: str) -> dict | None:
        return self.store.get(approval_id)

    def queues(self) -> dict:
        return self.store.pending_queues()

    def approve(self, approval_id: str, actor: str, comment: str | None = None, edits: dict | None = None) -> dict:
        """Approve (with `edits` inside the guardrails), then dispatch what was released."""
        item = self.store.approve(approval_id, actor, comment=comment, edits=edits)
        budget = self.rt.settings.inline_dispatch_budget_ms
        if budget > 0 and any(a["state"] == "ready" for a in item.get("outbox", [])):
            try:
                dispatch_decision(self.rt.dispatcher(), item["decision_id"], budget / 1000)
            except Exception:  # noqa: BLE001 - the approval is recorded; the workers run the actions
                log.exception("inline dispatch after approval %s failed", approval_id)
                return item
            item = self.store.get(approval_id)
        return item

    def reject(self, approval_id: str, actor: str, comment: str) -> dict:
        return self.store.reject(approval_id, actor, comment)


__all__ = ["Approvals"]

"""The dispatcher: outbox rows -> tool adapters, exactly once (docs/dispatch.md).

    from adapters.dispatch import Dispatcher, dispatch_decision
    d = Dispatcher(factory, build_registry(session_factory=factory), redis=redis,
                   contact_policy=load_contact_policy())
    d.run_once(limit=100, concurrency=4)        # what is due now
    d.run_forever(stop_event, poll=1.0)         # `postsale worker`
    dispatch_decision(runtime.dispatcher(), decision_id, 0.2)  # inline, before the HTTP response
"""
from .contact import ContactPolicy, ContactPolicyError, load_contact_policy, parse_contact_policy
from .dispatcher import Dispatcher, StepResult, Summary, enrich
from .inline import dispatch_decision, dispatch_inline

__all__ = ["Dispatcher", "StepResult", "Summary", "enrich", "dispatch_decision", "dispatch_inline",
           "ContactPolicy", "ContactPolicyError", "load_contact_policy", "parse_contact_policy"]

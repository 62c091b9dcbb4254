"""The action types a rule may request, and the offers' kinds. The dispatcher's tool catalog
(config/tools.yaml) maps each action type to the tool that performs it."""

ACTION_TYPES = {
    "create_quote": "create a renewal or upsell quote in the CRM",
    "schedule_outreach": "schedule an outreach task in marketing automation",
    "alert_csm": "alert the account's customer-success manager",
    "open_case": "open a case for a human team (finance, support)",
    "notify": "send a notification to a team channel",
    "fetch_contract": "fetch contract terms and prices from billing",
    "update_opportunity": "update the renewal / upsell opportunity in the CRM",
}

OUTREACH_ACTIONS = {"schedule_outreach"}

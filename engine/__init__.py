"""postsale engine: YAML rulesets → IR → durable_rules, one decision per session."""

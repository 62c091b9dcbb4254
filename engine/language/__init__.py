"""The ruleset language: its JSON Schemas, lowering YAML into the IR, and static checks."""

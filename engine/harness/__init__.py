"""The rule test harness: YAML cases beside the rules, a runner, coverage and reporters."""

"""`postsale`: the command line. Thin commands only: each parses its arguments, calls a use
case or the engine, and prints (one table/JSON printer in cli/support.py); exit codes are
shared (cli/main.py)."""

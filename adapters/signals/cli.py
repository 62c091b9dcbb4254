"""`postsale events | features | consume` (placeholder)."""


def add_subcommands(subparsers) -> None:
    return None

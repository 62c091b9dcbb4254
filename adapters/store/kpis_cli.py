"""`postsale kpis` (placeholder)."""


def add_subcommands(subparsers) -> None:
    return None

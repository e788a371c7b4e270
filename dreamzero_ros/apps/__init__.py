"""The `dreamzero` command line: subcommands (demo, bringup, serve, generate, export, train, eval, aim, operator
commands) and their drivers."""

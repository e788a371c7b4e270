"""The `dreamzero` command line: subcommands (demo, bringup, serve, operator commands) and their drivers."""

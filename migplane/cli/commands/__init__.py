"""One module per ``migplane`` subcommand: ``add_parser()`` and ``run()``."""

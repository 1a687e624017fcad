"""Exit codes of ``migplane`` and the error that carries one."""

OK = 0
FAILED = 1          # a migration failed or was aborted; a check failed
USAGE = 2           # bad arguments or CLI configuration
AGENT = 3           # an agent was unreachable, refused the token, or erred
NOT_FOUND = 4       # no such migration, instance or host
INTERRUPTED = 130   # Ctrl-C while watching (the migration goes on)

EPILOG = """\
exit codes:
  0    success (migration completed, every check passed)
  1    the migration failed or was aborted, or a check failed
  2    usage error: bad arguments, unknown host name, bad CLI configuration
  3    an agent was unreachable, refused the token, or answered an error
  4    not found: no such migration, instance or host
  130  interrupted while watching; the migration itself goes on
"""


class CliError(Exception):
    """An error to report in one line and exit with ``code``."""

    def __init__(self, message, code=USAGE):
        super().__init__(message)
        self.code = code

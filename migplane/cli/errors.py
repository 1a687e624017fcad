"""Exit codes of ``migplane`` and the error that carries one."""

from migplane.core import events
from migplane.core import settle

OK = 0
FAILED = 1          # a migration failed or was aborted; a check failed
USAGE = 2           # bad arguments or CLI configuration
AGENT = 3           # an agent was unreachable, refused the token, or erred
NOT_FOUND = 4       # no such migration, instance or host
INTERRUPTED = 130   # Ctrl-C while watching (the migration goes on)

EPILOG = """\
exit codes:
  0    success (migration completed, every check passed)
  1    the migration failed or was aborted (rolled back), or a check failed
  2    usage error: bad arguments, unknown host name, bad CLI configuration
  3    an agent was unreachable, refused the token, or answered an error
  4    not found: no such migration, instance or host
%s  130  interrupted while watching; the migration itself goes on
""" % "".join("  %-4d %s: %s\n" % (code, verdict, meaning)
              for verdict, (code, meaning) in settle.VERDICTS.items() if code > 4)


def for_verdict(record):
    """The exit code of a migration's record: its verdict's, from the one table."""
    verdict = (record.get("result") or {}).get("verdict")
    if verdict:
        return settle.exit_code(verdict)
    return OK if record.get("status") == events.COMPLETED else FAILED


class CliError(Exception):
    """An error to report in one line and exit with ``code``."""

    def __init__(self, message, code=USAGE):
        super().__init__(message)
        self.code = code

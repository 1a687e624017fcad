"""Following a migration or an evacuation: the one poller of both, and the
live progress line of ``migplane migrate``.

On a terminal the line is redrawn in place; otherwise (a log, CI) a line is
printed at most every few seconds, so output stays readable when captured.
"""

import sys
import time

from migplane.agent import errors as agent_errors
from migplane.cli import output
from migplane.core import driver as driver_mod

BAR = 24
#: Seconds between two polls of the source agent.
POLL_S = 0.5
#: Seconds an unreachable source agent is asked again (it may be restarting:
#: it keeps its records and settles what ran when it is back).
RECONNECT_S = 300.0


def follow(client, path, done, say=None, sleep=time.sleep, clock=time.monotonic,
           reconnect_s=RECONNECT_S):
    """Yield each answer of ``GET path?since=N`` (the events after the last
    seen) until ``done(record)``. An agent that stops answering is asked again
    for up to ``reconnect_s``; ``say(text)`` tells the operator meanwhile."""
    since = 0
    lost = None
    while True:
        try:
            record = client.get(path, params={"since": str(since)})
        except agent_errors.AgentUnreachable as err:
            now = clock()
            if lost is None:
                lost = now
                if say:
                    say("  source agent unreachable (%s); reconnecting for up to %d s"
                        % (err, reconnect_s))
            if now - lost >= reconnect_s:
                raise
            sleep(POLL_S * 2)
            continue
        if lost is not None:
            lost = None
            if say:
                say("  reconnected to the source agent; following %s" % path)
        since = record.get("last_event", since)
        yield record
        if done(record):
            return
        sleep(POLL_S)


class ProgressBar:
    def __init__(self, stream=None, clock=time.monotonic, every_s=5.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._clock = clock
        self._every = every_s
        self._last_print = None
        self._samples = []  # (elapsed_s, processed) of the job, for the rate
        self._drawn = False

    def rate(self, progress):
        """Bytes/s over the last few samples of the job's own clock."""
        point = (progress.get("time_elapsed_ms", 0) / 1000.0,
                 progress.get("data_processed", 0))
        if not self._samples or point[0] > self._samples[-1][0]:
            self._samples.append(point)
        self._samples = self._samples[-6:]
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 <= 0:
            return None
        return max(0.0, (b1 - b0) / (t1 - t0))

    def line(self, progress, uris=None):
        percent = _percent(progress)
        filled = int(BAR * percent / 100)
        via = ""
        if uris:
            via = "  via %s (%s plane)" % (uris.get("bulk_host"), uris.get("plane"))
        post = "  post-copy" if progress.get("postcopy") else ""
        return ("[%s%s] %5.1f%%  sent %s  %s  remaining %s  iter %d%s%s" % (
            "#" * filled, "." * (BAR - filled), percent,
            output.size(progress.get("data_processed")), output.rate(self.rate(progress)),
            output.size(progress.get("data_remaining")), progress.get("iteration", 0),
            post, via))

    def update(self, progress, uris=None, force=False):
        """Redraw (terminal) or print at most every ``every_s`` (log), or now if ``force``."""
        text = self.line(progress, uris)
        now = self._clock()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self._drawn = True
        elif force or self._last_print is None or now - self._last_print >= self._every:
            self.stream.write(text + "\n")
            self._last_print = now
        self.stream.flush()

    def message(self, text):
        """A line after the bar, which stays as it was at that moment."""
        if self.tty and self._drawn:
            self.stream.write("\n")
        self.stream.write(text + "\n")
        self._drawn = False
        self.stream.flush()

    def close(self):
        if self.tty and self._drawn:
            self.stream.write("\n")
            self._drawn = False
        self.stream.flush()


def _percent(progress):
    """Percent done of a progress record, by the one rule (JobProgress.percent)."""
    return driver_mod.JobProgress.from_dict(progress).percent

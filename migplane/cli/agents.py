"""Which agent serves which host: the CLI's small configuration.

HOST names map to agent URLs from, in order of precedence:

* ``--agent NAME=URL`` (repeatable);
* the ``[agents]`` section of the CLI file: ``--config FILE``, else
  ``$MIGPLANE_CLI_CONFIG``, else ``~/.config/migplane/cli.conf``, else
  ``/etc/migplane/cli.conf`` (the first that exists)::

      [agents]
      host-a = https://192.0.2.11:7480
      host-b = https://192.0.2.12:7480

      [auth]
      token_file = /etc/migplane/token    # or: token = ...
      ca_file = /etc/migplane/ca.pem      # verify the agents' HTTPS

A HOST may also be given as a URL directly. The token comes from
``--token``, ``$MIGPLANE_TOKEN``, ``--token-file`` or the file, in that order.
"""

import configparser
import dataclasses
import os
from typing import Dict
from typing import Optional

from migplane.agent import client as client_mod
from migplane.agent import errors as agent_errors
from migplane.cli import errors
from migplane.core import exception

DEFAULT_FILES = ("~/.config/migplane/cli.conf", "/etc/migplane/cli.conf")


@dataclasses.dataclass
class Directory:
    agents: Dict[str, str]
    token: Optional[str]
    ca_file: Optional[str]
    timeout: float = 60.0
    source: str = "command line"

    def url(self, host, option="HOST"):
        """The agent URL of ``host`` (a configured name, or a URL itself)."""
        if host in self.agents:
            return self.agents[host]
        if "://" in host:
            return _check(host, host, option)
        known = ", ".join(sorted(self.agents)) or "none"
        raise errors.CliError("unknown host %r for %s: known hosts: %s (add --agent %s="
                              "https://ADDRESS:7480 or an [agents] entry in %s)"
                              % (host, option, known, host, self.source))

    def name(self, url):
        for name, value in self.agents.items():
            if value == url:
                return name
        return url

    def client(self, host, option="HOST", timeout=None):
        return client_mod.AgentClient(self.url(host, option), self.token,
                                      ca_file=self.ca_file,
                                      timeout=timeout or self.timeout)


def _read_file(path):
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except UnicodeDecodeError as err:
        raise errors.CliError("cannot read CLI configuration %s: not UTF-8 text (byte %d)"
                              % (path, err.start))
    except (OSError, configparser.Error) as err:
        raise errors.CliError("cannot read CLI configuration %s: %s" % (path, err))
    return parser


def _config_path(explicit):
    if explicit:
        return explicit
    env = os.environ.get("MIGPLANE_CLI_CONFIG")
    if env:
        return env
    for candidate in DEFAULT_FILES:
        path = os.path.expanduser(candidate)
        if os.path.exists(path):
            return path
    return None


def _read_token(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return check_token(handle.read().strip(), "the token file %s" % path) or None
    except UnicodeDecodeError:
        raise errors.CliError("the token file %s is not text: is it the right file?" % path)
    except OSError as err:
        raise errors.CliError("cannot read the token file %s: %s" % (path, err))


def check_token(token, where):
    """``token`` if it can be a bearer token (printable ASCII, no space); the error
    never shows it, since a token pasted by mistake may be a key."""
    if token and not all("!" <= char <= "~" for char in token):
        if "\n" in token or "\r" in token:
            what = "holds several lines (a certificate or key by mistake?)"
        elif token.isascii():
            what = "contains spaces or control characters"
        else:
            what = "contains non-ASCII characters"
        raise errors.CliError("%s %s: a token is printable ASCII without spaces; it is "
                              "not shown here" % (where, what))
    return token


def _check_file(path, where):
    if path and not os.path.isfile(path):
        raise errors.CliError("%s %s: no such file" % (where, path))
    return path


def _check(name, url, where):
    try:
        return client_mod.check_url(url, field="agent %s" % name)
    except (agent_errors.BadRequest, exception.MigplaneError) as err:
        raise errors.CliError("%s: %s" % (where, err))
    except ValueError as err:   # urllib: e.g. an unclosed IPv6 bracket
        raise errors.CliError("%s: bad URL %r for agent %s: %s" % (where, url, name, err))


def load(args):
    """The :class:`Directory` for parsed ``args`` (see the module doc)."""
    path = _config_path(getattr(args, "config", None))
    agents, token, ca_file, source = {}, None, None, "a CLI file"
    if path:
        parser = _read_file(path)
        source = path
        if parser.has_section("agents"):
            for name, url in parser.items("agents"):
                agents[name] = _check(name, url, path)
        if parser.has_section("auth"):
            auth = dict(parser.items("auth"))
            token = check_token(auth.get("token"), "[auth] token in %s" % path) or (
                _read_token(auth["token_file"]) if auth.get("token_file") else None)
            ca_file = _check_file(auth.get("ca_file"), "[auth] ca_file in %s:" % path)
    for item in getattr(args, "agent", None) or []:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise errors.CliError("--agent %r: want NAME=URL, e.g. "
                                  "host-a=https://192.0.2.11:7480" % item)
        agents[name.strip()] = _check(name, url.strip(), "--agent")
    if getattr(args, "token", None):
        token = check_token(args.token, "--token")
    elif os.environ.get("MIGPLANE_TOKEN"):
        token = check_token(os.environ["MIGPLANE_TOKEN"], "$MIGPLANE_TOKEN")
    elif getattr(args, "token_file", None):
        token = _read_token(args.token_file)
    if getattr(args, "ca_file", None):
        ca_file = _check_file(args.ca_file, "--ca-file")
    return Directory(agents=agents, token=token, ca_file=ca_file,
                     timeout=getattr(args, "timeout", None) or 60.0, source=source)

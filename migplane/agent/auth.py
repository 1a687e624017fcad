"""Bearer-token authentication of every request.

Tokens are compared in constant time and never logged. Both
``Authorization: Bearer <token>`` and ``X-Auth-Token: <token>`` are read.
"""

import hmac

from migplane.agent import errors


def presented(headers):
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("X-Auth-Token", "").strip() or None


def check(headers, accepted):
    """Raise Unauthorized unless ``headers`` carry one of the ``accepted`` tokens."""
    token = presented(headers)
    if token is None:
        raise errors.Unauthorized(reason="send 'Authorization: Bearer <token>'")
    ok = False
    for candidate in accepted:  # no early exit: timing tells nothing
        ok |= hmac.compare_digest(token.encode(), candidate.encode())
    if not ok:
        raise errors.Unauthorized(reason="the token is not accepted by this agent")

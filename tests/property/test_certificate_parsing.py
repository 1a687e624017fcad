"""The agent's certificate reader and its expiry rule.

``tls.parse_certificate`` reads the agent's own certificate file with the
standard library; whatever the bytes, it answers with a certificate or a
ValueError (which becomes a ConfigError naming the file), never another
exception. ``tls.expires_soon`` is the 30-day warning rule.
"""

import base64
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migplane.agent import tls

DAY = 86400


@pytest.fixture(scope="module")
def der(tmp_path_factory):
    """A real certificate's DER, from openssl."""
    work = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", work / "k.pem",
                    "-out", work / "c.pem", "-days", "400", "-subj", "/CN=host-a",
                    "-set_serial", "1234567"], check=True, capture_output=True)
    text = (work / "c.pem").read_text()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END")[0]
    return base64.b64decode("".join(body.split()))


def _parse_or_value_error(data):
    try:
        return tls.parse_certificate(data)
    except ValueError:
        return None


def test_the_real_certificate_parses(der):
    cert = tls.parse_certificate(der)
    assert cert.serial == 1234567
    assert 399 * DAY < cert.not_after - cert.not_before <= 400 * DAY


@given(data=st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_value_error(data):
    _parse_or_value_error(data)


@given(data=st.data())
def test_a_damaged_certificate_parses_or_raises_value_error(der, data):
    damaged = bytearray(der)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    _parse_or_value_error(bytes(damaged[:cut]))


@given(not_after=st.integers(0, 2 ** 40), now=st.integers(0, 2 ** 40),
       later=st.integers(0, 400 * DAY), days=st.integers(1, 365))
def test_the_warning_starts_days_before_the_end_and_never_stops(not_after, now, later,
                                                                days):
    soon = tls.expires_soon(not_after, now, days)
    assert soon == (not_after - now <= days * DAY)
    if soon:  # once warned, warned at every later time
        assert tls.expires_soon(not_after, now + later, days)

"""Which environment variables the files read: static analysis of the templates, and which are secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.errors import UsageError
from kpipe.export.environment import env_vars
from kpipe.export.kubernetes import dns_name
from kpipe.loading.files import ProjectFiles


def _vars(tmp_path: Path, text: str) -> dict[str, tuple[bool, bool, tuple[str, ...]]]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return {
        v.name: (v.secret, v.has_default, v.keys)
        for v in env_vars([(path, "p.yaml")], ProjectFiles(tmp_path))
    }


def test_calls_are_found_without_rendering(tmp_path: Path) -> None:
    text = (
        "cluster:\n"
        "  bootstrap_servers: \"{{ env('BROKERS', 'localhost:9092') }}\"\n"
        "  config:\n"
        "    sasl.username: \"{{ env('KAFKA_USER') }}\"\n"
        "    sasl.password: {{ env('PW_FROM_VAULT') | tojson }}\n"
        "{% if env('REGION', 'eu') == 'us' %}\n"
        "    client.rack: \"{{ env('RACK') }}\"\n"
        "{% endif %}\n"
        "    # sasl.oauthbearer.client.secret: \"{{ env('OLD_SECRET', '') }}\"\n"
        "    # ssl.ca.location: \"{{ env('MUST_EXIST') }}\"\n"
        "    api_token: \"{{ env('SERVICE_CREDENTIALS', '') }}\"\n"
    )
    assert _vars(tmp_path, text) == {
        "BROKERS": (False, True, ("bootstrap_servers",)),
        "KAFKA_USER": (True, False, ("sasl.username",)),  # a secret librdkafka key
        "PW_FROM_VAULT": (True, False, ("sasl.password",)),
        "REGION": (False, True, ()),  # read inside a tag: counted, though on no key
        "RACK": (False, False, ("client.rack",)),  # only under an {% if %}: found all the same
        # OLD_SECRET sits in a YAML comment with a default: its value is thrown away.
        "MUST_EXIST": (False, False, ("ssl.ca.location",)),  # commented, but rendering fails without it
        "SERVICE_CREDENTIALS": (True, True, ("api_token",)),  # its name looks secret
    }


def test_a_variable_read_twice_needs_a_default_everywhere_to_have_one(tmp_path: Path) -> None:
    assert _vars(tmp_path, "a: \"{{ env('X', '1') }}\"\nb: \"{{ env('X') }}\"\n")["X"][1] is False


def test_a_computed_name_cannot_be_exported(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"p.yaml:2:\d+: env\(\) with a computed name"):
        _vars(tmp_path, "a: 1\nb: \"{{ env('X_' ~ suffix) }}\"\n")


def test_dns_names() -> None:
    assert dns_name("order-processors") == "order-processors"
    assert dns_name("Orders.Billing") != dns_name("orders-billing")  # changed names carry a hash
    assert dns_name("Orders.Billing").startswith("orders-billing-")
    long = dns_name("g" * 100)
    assert len(long) <= 63 and long[-7] == "-"
    assert dns_name('a"]; rm -rf /').replace("-", "").isalnum()

"""A namespace's sourceNetworks narrow the controller's address policy; they never widen it."""

from __future__ import annotations

import ipaddress

import pytest

from moonlander.credentials import KubeconfigError, Policy, check_address, check_server

NARROW = Policy(within_networks=(ipaddress.ip_network("10.1.0.0/16"),))


@pytest.mark.parametrize("address", ["10.1.2.3", "10.1.255.254"])
def test_inside_is_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address), NARROW)
    check_server(f"https://{address}:6443", NARROW)


@pytest.mark.parametrize(
    "address", ["10.2.0.1", "192.168.1.1", "8.8.8.8", "::ffff:10.1.2.3", "64:ff9b::a01:203"]
)
def test_outside_is_refused_without_the_allowed_networks_hint(address: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        check_address(ipaddress.ip_address(address), NARROW)
    assert caught.value.reason == "AddressNotAllowed"
    assert "sourceNetworks" in str(caught.value)
    assert "allowed_networks" not in str(caught.value)


def test_narrowing_never_widens() -> None:
    metadata = Policy(within_networks=(ipaddress.ip_network("169.254.0.0/16"),))
    with pytest.raises(KubeconfigError):
        check_address(ipaddress.ip_address("169.254.169.254"), metadata)
    loopback = Policy(within_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    with pytest.raises(KubeconfigError):
        check_server("https://127.0.0.1:6443", loopback)
    check_server(
        "https://127.0.0.1:6443",
        Policy(allow_loopback=True, within_networks=loopback.within_networks),
    )


def test_networks_must_be_networks() -> None:
    with pytest.raises(TypeError):
        Policy(within_networks=("10.0.0.0/8",))  # type: ignore[arg-type]

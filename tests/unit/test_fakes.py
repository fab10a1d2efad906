"""The shared fakes are the runtime's client protocols, so every test drives the same surface the real
confluent_kafka clients offer (and nothing more)."""

from __future__ import annotations

import inspect

from confluent_kafka import Consumer, Producer

from fakes import FakeConsumer, FakeProducer
from kpipe.runtime.client_protocols import ConsumerClient, ProducerClient


def test_the_fakes_and_the_real_clients_implement_the_runtime_protocols() -> None:
    assert isinstance(FakeConsumer(), ConsumerClient)
    assert isinstance(FakeProducer(), ProducerClient)
    for protocol, real in ((ConsumerClient, Consumer), (ProducerClient, Producer)):
        wanted = {n for n, _ in inspect.getmembers(protocol, inspect.isfunction) if not n.startswith("_")}
        assert wanted <= set(dir(real)), wanted - set(dir(real))
    assert hasattr(Producer, "__len__")

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import ValidationError

from bus import Message, message_class_for


class Seed(Message):
    kind: Literal["test.seed"] = "test.seed"
    text: str


class Child(Message):
    kind: Literal["test.child"] = "test.child"
    text: str


def test_message_without_lineage_starts_its_own() -> None:
    seed = Seed(text="x")
    assert seed.correlation_id == seed.id
    assert seed.causation_id is None


def test_caused_by_carries_lineage() -> None:
    seed = Seed(text="x")
    child = Child.caused_by(seed, text="y")
    grandchild = Child.caused_by(child, text="z")
    assert child.causation_id == seed.id
    assert grandchild.causation_id == child.id
    assert grandchild.correlation_id == seed.id


def test_messages_are_frozen_and_strict() -> None:
    seed = Seed(text="x")
    with pytest.raises(ValidationError):
        seed.text = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Seed(text="x", unknown=1)  # type: ignore[call-arg]


def test_kind_registry_round_trips_json() -> None:
    seed = Seed(text="x")
    data = seed.model_dump(mode="json")
    assert data["kind"] == "test.seed"
    restored = message_class_for(data["kind"]).model_validate(data)
    assert restored == seed


def test_concrete_message_must_declare_a_kind() -> None:
    with pytest.raises(TypeError, match="must declare kind"):

        class Nameless(Message):
            text: str


def test_two_classes_cannot_share_a_kind() -> None:
    with pytest.raises(TypeError, match="already used"):

        class Impostor(Message):
            kind: Literal["test.seed"] = "test.seed"

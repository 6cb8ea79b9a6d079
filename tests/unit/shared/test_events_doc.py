"""docs/events.md cannot drift from the schema: every JSON example on it parses as an event, and it
shows every event type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.events import EventType, parse_event

DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"
EXAMPLES = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{n}" for n in range(len(EXAMPLES))])
def test_every_json_example_in_the_events_doc_is_a_valid_event(example: str) -> None:
    parse_event(example.encode())


def test_the_events_doc_shows_one_example_of_each_event_type() -> None:
    shown = sorted(parse_event(example.encode()).type for example in EXAMPLES)

    assert shown == sorted(t.value for t in EventType)

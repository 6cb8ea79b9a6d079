"""``bundlewise replay`` and ``bundlewise redrive`` command lines: what they accept and refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.ingestion import redrive
from services.ingestion.replay import parse_args, parse_offsets
from shared.kafka_replay import OffsetRange, parse_time


def test_offsets_name_a_partition_and_an_end_exclusive_range() -> None:
    assert parse_offsets("0:100-200,1:50-,2") == (
        OffsetRange(0, 100, 200),
        OffsetRange(1, 50, None),
        OffsetRange(2, 0, None),
    )


@pytest.mark.parametrize("spec", ["0:200-100", "x:1-2", "0:1", "0:-5", "0:1-2,0:3-4", ""])
def test_malformed_offsets_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_offsets(spec)


def test_times_are_iso_8601_in_utc_unless_an_offset_is_given_or_epoch_milliseconds() -> None:
    assert parse_time("2014-07-22") == datetime(2014, 7, 22, tzinfo=UTC)
    assert parse_time("2014-07-22T10:00:00Z") == datetime(2014, 7, 22, 10, tzinfo=UTC)
    assert parse_time("2014-07-22T10:00:00+02:00") == datetime(2014, 7, 22, 10, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time("1406023200000") == datetime(2014, 7, 22, 10, tzinfo=UTC)


def test_a_namespace_replay_collects_every_selection_and_filter() -> None:
    options = parse_args(
        [
            "--topic",
            "t",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-02T00:00:00Z",
            "--event-time-from",
            "2014-07-01",
            "--event-time-to",
            "2014-08-01",
            "--type",
            "purchase,view",
            "--type",
            "add_to_cart",
            "--user",
            "u1,u2",
            "--catalog",
            "amazon",
            "--namespace",
            "replay_a",
            "--rate",
            "500",
        ]
    )

    assert options.topic == "t"
    assert options.kafka_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert options.kafka_to == datetime(2026, 1, 2, tzinfo=UTC)
    assert options.event_filter.types == {"purchase", "view", "add_to_cart"}
    assert options.event_filter.user_ids == {"u1", "u2"}
    assert options.event_filter.catalog_ids == {"amazon"}
    assert options.event_filter.event_time_from == datetime(2014, 7, 1, tzinfo=UTC)
    assert options.event_filter.event_time_to == datetime(2014, 8, 1, tzinfo=UTC)
    assert (options.namespace, options.to_topic, options.dry_run) == ("replay_a", None, False)
    assert (options.rate, options.speedup) == (500, None)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "one of the arguments --to-topic --namespace --dry-run is required"),
        (["--dry-run", "--namespace", "x"], "not allowed with argument"),
        (["--namespace", "live"], "never writes to the live namespace"),
        (["--namespace", "Bad-Name"], "must match"),
        (["--dry-run", "--rate", "10", "--speedup", "2"], "not allowed with argument"),
        (["--dry-run", "--rate", "0"], "--rate must be positive"),
        (["--dry-run", "--type", "purchse"], "unknown event type(s) purchse"),
        (["--dry-run", "--offsets", "0:1-", "--from", "2026-01-01"], "drop --from/--to"),
        (["--dry-run", "--from", "2026-01-02", "--to", "2026-01-01"], "--to must be after --from"),
        (["--dry-run", "--from", "yesterday"], "invalid parse_time value"),
    ],
)
def test_unusable_command_lines_exit_2_saying_why(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)

    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_redrive_defaults_to_every_reason_and_sends() -> None:
    args = redrive.parse_args([])

    assert (args.reason, args.dry_run, args.deadletter_topic, args.events_topic) == ("", False, None, None)


def test_redrive_dry_run_filters_by_reason() -> None:
    args = redrive.parse_args(["--dry-run", "--reason", "item_id"])

    assert (args.reason, args.dry_run) == ("item_id", True)

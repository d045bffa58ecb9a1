"""The drill's plan: the newest, the largest that fits, then a rotation that covers every file once a lap."""

from __future__ import annotations

import math

from checks.drill import Plan, plan
from checks.model import Candidate

SALT = "nightly/primary"
MiB = 1 << 20


def listing(count: int = 40) -> list[Candidate]:
    """A fixed listing: file-07 is the newest, file-13 the largest."""
    return [Candidate("snap", f"/srv/file-{n:02}", size=1000 + n * (50_000 if n == 13 else 10), mtime=100.0 + n * (
        10 if n == 7 else -1)) for n in range(count)]


def drills(files: list[Candidate], count: int, size: int = 6, max_bytes: int = 1 << 30) -> list[Plan]:
    plans, cursor, lap = [], -1, 0
    for _ in range(count):
        planned = plan(iter(files), SALT, cursor, lap, size, max_bytes)
        plans.append(planned)
        cursor, lap = planned.cursor_to, planned.lap
    return plans


def rotation(planned: Plan) -> set[str]:
    return {pick.candidate.path for pick in planned.picks if pick.why == "rotation"}


def test_each_drill_has_the_newest_the_largest_and_fresh_files_of_the_ring():
    plans = drills(listing(), 3)
    for planned in plans:
        assert [(pick.why, pick.candidate.path) for pick in planned.picks[:2]] == [
            ("newest", "/srv/file-07"), ("largest", "/srv/file-13")]
        assert len(rotation(planned)) == 4
    first, second, third = map(rotation, plans)
    assert not first & second and not second & third and not first & third
    assert plans[1].cursor_from == plans[0].cursor_to, "each drill starts where the last one stopped"


def test_one_lap_of_ceil_n_over_files_minus_2_drills_covers_every_file():
    files = listing(40)
    count = math.ceil(40 / (6 - 2))
    plans = drills(files, count)
    drilled = set().union(*({pick.candidate.path for pick in planned.picks} for planned in plans))
    assert drilled == {candidate.path for candidate in files}
    # the newest and the largest are drilled every time, so the 38 others fill the rotation of 9.5 drills: the
    # tenth finishes the lap and starts the next
    assert [planned.lap for planned in plans] == [0] * (count - 1) + [1]
    coverages = [planned.coverage for planned in plans[:-1]]
    assert coverages == sorted(coverages) and 0 < coverages[0] < 0.2 and coverages[-1] > 0.9
    assert plans[-1].coverage < 0.1, "the new lap has just begun"


def test_the_same_listing_and_cursor_give_the_same_plan_whatever_the_listing_order():
    files = listing()
    assert plan(iter(files), SALT, 12345, 0, 6, 1 << 30) == plan(reversed(files), SALT, 12345, 0, 6, 1 << 30)
    other = plan(iter(files), "nightly/offsite", -1, 0, 6, 1 << 30)
    assert rotation(other) != rotation(plan(iter(files), SALT, -1, 0, 6, 1 << 30)), "each location its own ring"


def test_max_bytes_is_respected_and_the_oversized_file_is_named():
    files = [*listing(20), Candidate("snap", "/srv/huge.img", size=50 * MiB, mtime=1.0)]
    planned = plan(iter(files), SALT, -1, 0, 20, 10_000)
    assert planned.bytes <= 10_000
    assert "/srv/huge.img" not in {pick.candidate.path for pick in planned.picks}
    assert (planned.oversized, planned.largest_oversized.path) == (2, "/srv/huge.img"), "and file-13 (651 kB)"
    assert planned.oversized_note(10_000) == ("2 file(s) over max_bytes (9.8 KiB) are never drilled, the largest "
                                              "/srv/huge.img (50.0 MiB)")
    assert (planned.oversized_row(10_000).path, planned.oversized_row(10_000).detail) == (
        "/srv/huge.img", "over max_bytes (9.8 KiB): never drilled, the largest of 2 such file(s)")
    assert [(pick.why, pick.candidate.path) for pick in planned.picks[:2]] == [
        ("newest", "/srv/file-07"), ("largest", "/srv/file-19")]
    assert len(planned.picks) == 9, "1070 + 1190 + 7 more of about 1100 bytes: the bytes ran out before the files"

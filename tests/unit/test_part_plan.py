from cosfs.cos.store import MAX_PARTS
from cosfs.ranges import RangeSet
from cosfs.write.uploader import MIN_COPY_PART_BYTES, part_size_for, plan_parts

MiB = 1024 * 1024


def test_part_size_grows_to_fit_ten_thousand_parts():
    assert part_size_for(100 * MiB, 8 * MiB) == 8 * MiB
    assert part_size_for(0, 512 * 1024) == MiB  # never below COS's 1 MiB minimum
    for size in (80 * 1024 * MiB, 5 * 1024**4, 48 * 1024**4):
        part = part_size_for(size, 8 * MiB)
        assert part % MiB == 0 and -(-size // part) <= MAX_PARTS


def test_plan_copies_only_untouched_big_base_parts():
    written = RangeSet([(20 * MiB + 5, 20 * MiB + 10)])
    plans = plan_parts(48 * MiB, 8 * MiB, base_limit=48 * MiB, written=written)
    assert [(p.number, p.start, p.end) for p in plans][:2] == [(1, 0, 8 * MiB), (2, 8 * MiB, 16 * MiB)]
    assert [p.copy for p in plans] == [True, True, False, True, True, True]
    truncated = plan_parts(48 * MiB, 8 * MiB, base_limit=30 * MiB)
    assert [p.copy for p in truncated] == [True, True, True, False, False, False]
    assert not any(p.copy for p in plan_parts(48 * MiB, 8 * MiB))  # no base: nothing to copy
    small_tail = plan_parts(8 * MiB + MIN_COPY_PART_BYTES - 1, 8 * MiB, base_limit=64 * MiB)
    assert [p.copy for p in small_tail] == [True, False]  # too small to copy: uploaded

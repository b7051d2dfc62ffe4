from hypothesis import given, strategies as st

from cosfs.ranges import RangeSet

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(0, 20)), max_size=40)


@given(ops, st.integers(0, 80), st.integers(0, 30))
def test_rangeset_matches_a_set_of_bytes(operations, probe_start, probe_len):
    ranges = RangeSet()
    model: set[int] = set()
    for add, start, length in operations:
        if add:
            ranges.add(start, start + length)
            model |= set(range(start, start + length))
        else:
            ranges.remove(start, start + length)
            model -= set(range(start, start + length))
    covered = {b for s, e in ranges for b in range(s, e)}
    assert covered == model
    spans = list(ranges)
    assert all(s < e for s, e in spans)
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))  # merged, sorted
    end = probe_start + probe_len
    pieces = list(ranges.split(probe_start, end))
    assert [b for a, z, _ in pieces for b in range(a, z)] == list(range(probe_start, end))
    for a, z, inside in pieces:
        assert all((b in model) == inside for b in range(a, z))
    assert ranges.overlaps(probe_start, end) == any(b in model for b in range(probe_start, end))
    assert ranges.covers(probe_start, end) == all(b in model for b in range(probe_start, end))

"""The job state machine's table (``_states.py``), checked against its documented diagram.

Pure functions, no I/O: plain synchronous tests.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jdobb_async_queue import JobStatus
from jdobb_async_queue._states import TRANSITIONS, Event, sources, transition

P, R = JobStatus.PENDING, JobStatus.PROCESSING
C, F, X = JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED
TERMINAL = {C, F, X}

#: The diagram in the module's docstring, written out independently of the table.
DIAGRAM: dict[tuple[JobStatus, Event], JobStatus] = {
    (P, Event.CLAIM): R,
    (P, Event.CANCEL): X,
    (R, Event.COMPLETE): C,
    (R, Event.FAIL): F,
    (R, Event.RETRY_LATER): P,
    (R, Event.RELEASE): P,
    (R, Event.CANCEL): X,
    (F, Event.RETRY): P,
    (X, Event.RETRY): P,
}

states = st.sampled_from(list(JobStatus))
events = st.sampled_from(list(Event))


@given(states, events)
def test_transition_follows_the_diagram(state: JobStatus, event: Event) -> None:
    assert transition(state, event) == DIAGRAM.get((state, event))


@given(states, events)
def test_transition_takes_the_plain_string_value(state: JobStatus, event: Event) -> None:
    # Backends store statuses as strings; JobStatus is a str enum, so the value keys the same.
    assert transition(JobStatus(state.value), event) == transition(state, event)


@given(st.sampled_from(sorted(TERMINAL)), events)
def test_terminal_states_only_leave_by_retry(state: JobStatus, event: Event) -> None:
    after = transition(state, event)
    if event is not Event.RETRY:
        assert after is None
    elif state is C:
        assert after is None  # a COMPLETE job is done for good
    else:
        assert after is P


@given(events)
def test_sources_are_exactly_the_states_with_a_transition(event: Event) -> None:
    expected = {s for s in JobStatus if transition(s, event) is not None}
    assert sources(event) == expected
    assert sources(event) == {s for (s, e) in DIAGRAM if e is event}
    assert isinstance(sources(event), frozenset)


@given(st.lists(events, max_size=30))
def test_random_walks_from_pending_stay_in_the_diagram(walk: list[Event]) -> None:
    state = P
    for event in walk:
        after = transition(state, event)
        if after is None:
            assert state not in sources(event)
            continue
        assert (state, event) in DIAGRAM
        assert state in sources(event)
        if state is C:
            raise AssertionError("left COMPLETE")
        state = after


def test_table_has_exactly_the_diagrams_transitions() -> None:
    assert TRANSITIONS == DIAGRAM


def test_every_status_is_reachable_from_pending() -> None:
    reached = {P}
    frontier = [P]
    while frontier:
        state = frontier.pop()
        for event in Event:
            after = transition(state, event)
            if after is not None and after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(JobStatus)


def test_every_event_is_allowed_somewhere() -> None:
    assert all(sources(event) for event in Event)


def test_pending_is_reachable_again_from_every_status_but_complete() -> None:
    for state in set(JobStatus) - {C}:
        reached, frontier = {state}, [state]
        while frontier:
            s = frontier.pop()
            for event in Event:
                after = transition(s, event)
                if after is not None and after not in reached:
                    reached.add(after)
                    frontier.append(after)
        assert P in reached, state

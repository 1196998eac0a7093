"""Declared state machines, for the ORM and the lean SQL paths alike.

A model with StateMachine declares its allowed moves in `_transitions`
(a set of (from, to) pairs, as Tryton's Workflow) and that table is the one
source of which state may follow which:

- `@transition('to')` methods are Tryton's `@Workflow.transition` that
  refuse (raise) a record whose move is not declared instead of skipping
  it silently;
- set-based SQL paths (bookings, gate uploads, crons) move rows with
  `sql_transition`, whose `WHERE state IN (…)` is `Model.sources('to')`.

The hook: `on_state_change(cls, to_state, ids)` is called in the same
transaction after the records with these ids entered `to_state`, whatever
moved them (a transition method, any ORM write of the state, or
`sql_transition`, which passes the ids it updated). It does nothing here;
modules extend it through PoolMeta and call super(), e.g.::

    class Order(metaclass=PoolMeta):
        __name__ = 'scenic.order'

        @classmethod
        def on_state_change(cls, to_state, ids):
            super().on_state_change(to_state, ids)
            if to_state == 'paid':
                post_revenue(cls.browse(ids))

The records are already in their new state when the hook runs; an exception
it raises rolls the whole transaction back.

A listener also declares the states it acts on in `_state_hooks` (in
`__setup__`: ``cls._state_hooks = cls._state_hooks | {'used'}``): the
booking engine (engine.py), which books and pays outside a Tryton
transaction, hands a request whose moves enter a hooked state to the Tryton
path, which runs the hook.

A listener that only writes SQL through `dbtools` (cursor, user, table)
registers with `@sql_hook(model name, state, ...)` instead: it runs on
both paths, from the base on_state_change and from `entered` in the
engine's session, so the engine keeps its own fast path for those states.

A SQL listener may also name the database function that does its work
(`@sql_hook(..., function='name')`, a function of the module's versioned
sql/*.sql taking (to_state text, ids integer[], uid integer, now
timestamp)); the Python listener must then be that function's call. The
booking engine's database functions (sql/engine.sql: `scenic_pay`) move
rows in the database itself: they call, in the same transaction and right
after the move, exactly the functions `sql_hook_functions(model, state)`
lists. When a listener of that state has no function, it returns None and
the engine does not inline the hooks: it runs `run_sql_hooks` (via
`entered`) with the ids the database function moved, in the same
transaction. Either way every listener runs, once.
"""
import functools

from trytond import backend
from trytond.i18n import gettext
from trytond.model import Workflow
from trytond.model.fields import SQL_OPERATORS
from trytond.transaction import Transaction

from . import dbtools
from .exceptions import StateError


_sql_hooks = {}


def sql_hook(model_name, *states, function=None):
    """Register function(to_state, ids), run after rows of model_name
    entered one of states, in the same transaction, on the Tryton path and
    in the booking engine's session alike: it must use dbtools' cursor,
    user and table only (no Pool, no Transaction). `function`: the
    database function that does the same work (see the module's doc)."""
    def decorator(func):
        func.sql_function = function
        for state in states:
            _sql_hooks.setdefault((model_name, state), []).append(func)
        return func
    return decorator


def sql_hook_functions(model_name, to_state):
    """The database functions of the SQL listeners of rows of model_name
    entering to_state, in registration order ([] when none listens); None
    when one of them has no function (it must run in Python)."""
    functions = [getattr(f, 'sql_function', None)
        for f in _sql_hooks.get((model_name, to_state), ())]
    if None in functions:
        return None
    return functions


def run_sql_hooks(model_name, to_state, ids):
    for func in _sql_hooks.get((model_name, to_state), ()):
        func(to_state, ids)


class StateMachine(Workflow):
    "Workflow whose transition table also governs SQL paths and hooks."
    __slots__ = ()
    # the states whose entry on_state_change listeners act on
    _state_hooks = frozenset()

    @classmethod
    def sources(cls, to_state):
        "The states from which a record may enter to_state, sorted."
        return sorted({f for f, t in cls._transitions if t == to_state})

    @classmethod
    def may_enter(cls, from_state, to_state):
        return (from_state, to_state) in cls._transitions

    @classmethod
    def transition_error(cls, record, to_state):
        "The exception refusing an undeclared move of record."
        selection = dict(cls._fields[cls._transition_state].selection)
        current = getattr(record, cls._transition_state)
        return StateError(gettext('scenic_ticket.msg_state_transition',
                record=record.rec_name,
                from_state=selection.get(current, current),
                to_state=selection.get(to_state, to_state)))

    @classmethod
    def check_transition(cls, records, to_state):
        "Raise transition_error for the first record that may not move."
        for record in records:
            if not cls.may_enter(
                    getattr(record, cls._transition_state), to_state):
                raise cls.transition_error(record, to_state)

    @classmethod
    def on_state_change(cls, to_state, ids):
        """Called after the records with these ids entered to_state, in the
        same transaction. Extend through PoolMeta and call super()."""
        run_sql_hooks(cls.__name__, to_state, ids)

    @classmethod
    def write(cls, *args):
        entering = []
        actions = iter(args)
        for records, values in zip(actions, actions):
            state = values.get(cls._transition_state)
            if state is not None and records:
                ids = cls._not_in_state([r.id for r in records], state)
                if ids:
                    entering.append((state, ids))
        super().write(*args)
        for state, ids in entering:
            cls.on_state_change(state, ids)

    @classmethod
    def _not_in_state(cls, ids, state):
        table = cls.__table__()
        column = getattr(table, cls._transition_state)
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.select(table.id,
                where=SQL_OPERATORS['in'](table.id, ids) & (column != state)))
        return sorted(r[0] for r in cursor)


def transition(state):
    """Tryton's @Workflow.transition(state), refusing undeclared moves.

    Use under @classmethod, as Workflow.transition.
    """
    def decorator(func):
        checked = Workflow.transition(state)(func)

        @functools.wraps(func)
        def wrapper(cls, records, *args, **kwargs):
            cls.check_transition(records, state)
            return checked(cls, records, *args, **kwargs)
        return wrapper
    return decorator


def sql_transition(Model, table, to_state, where, columns=(), values=()):
    """Move the rows of Model's `table` matching `where` to to_state, as far
    as Model._transitions allows, in one set-based UPDATE; also set
    columns to values. Call Model.on_state_change with the ids moved and
    return them (sorted).
    """
    state = getattr(table, Model._transition_state)
    sources = Model.sources(to_state)
    if not sources:
        return []
    where &= state.in_(sources)
    columns = [state, table.write_uid, table.write_date, *columns]
    values = [to_state, dbtools.user(), dbtools.utcnow(), *values]
    cursor = dbtools.cursor()
    if backend.name == 'postgresql':
        cursor.execute(*table.update(columns, values, where=where,
                returning=[table.id]))
        ids = sorted(r[0] for r in cursor)
    else:
        # SQLite refuses RETURNING on the aliased table python-sql
        # writes; its writers are serialized, so read, then write.
        cursor.execute(*table.select(table.id, where=where))
        ids = sorted(r[0] for r in cursor)
        if ids:
            cursor.execute(*table.update(columns, values,
                    where=SQL_OPERATORS['in'](table.id, ids)))
    entered(Model, to_state, ids)
    return ids


def entered(Model, to_state, ids):
    """After a SQL path moved the rows with these ids to to_state itself
    (row by row, with `WHERE state IN Model.sources(to_state)`): make the
    ORM read them again and call the hook."""
    if ids:
        if dbtools.in_session():
            # the engine runs no ORM listener: it hands those moves to
            # Tryton; SQL listeners run here
            if to_state in Model._state_hooks:
                raise RuntimeError(f"{Model.__name__} entering {to_state} "
                    "has listeners: the booking engine must not move it")
            run_sql_hooks(Model.__name__, to_state, sorted(ids))
            return
        dbtools.forget(Model.__name__)
        Model.on_state_change(to_state, sorted(ids))

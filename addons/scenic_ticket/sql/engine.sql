-- scenic_ticket: the booking engine's database functions (PostgreSQL).
--
-- version: 7
--
-- Installed and upgraded by the module (sqlfunctions.install, from
-- scenic.order's __register__, i.e. `trytond-admin -u scenic_ticket`) when
-- the database's scenic_engine_version() differs from the version above;
-- the whole file runs again (CREATE OR REPLACE; a function whose
-- arguments or result change is dropped first, below). Bump the version
-- with every change of this file.
--
-- What these functions may do, and what not (engine.py, reservation.py):
-- they CLAIM and WRITE what the Python plan step decided (prices, real-name
-- and per-ID rules, validity, limits, the transitions' source states all
-- come in as arguments) and refuse with the plan's stable codes (id_limit,
-- sold_out) when a claim fails; the caller then rolls back. They never
-- decide a business rule. Rows are the Tryton models' tables, with their
-- audit columns. State-change hooks: the SQL listeners the caller names
-- (workflow.sql_hook(..., function=...)) are called here after the move,
-- in the same transaction, with (to_state, ids, uid, now).
--
-- Plans: PL/pgSQL keeps a plan per statement and, after five calls, uses
-- the generic one unless the custom plans (planned for each call's values)
-- look cheaper. The rollup's upsert on `= ANY(ids)` (planned for 10
-- elements generic, called with 1-3) never looked cheaper generic, so it
-- was planned again at every payment: 0.38-0.90 ms, against 0.1 ms to run
-- it (bench/README.md, seventh pass). The rollup's functions are declared
-- `SET plan_cache_mode = force_generic_plan`: the generic plan uses the
-- same indexes (the tickets', orders' and lines' primary keys, the
-- rollup's unique key) as the custom one. scenic_book is not: the setting
-- would also hold for the foreign-key checks of its inserts, and a
-- generic plan cached while a table is small keeps its sequential scan
-- when the table grows. Its stripes' claim, planned again at every call
-- too, is a function of its own with the setting (scenic_claim_stripe),
-- as is the holds read before it (scenic_hold_counts).

DROP FUNCTION IF EXISTS scenic_book(json);
DROP FUNCTION IF EXISTS scenic_book_whole(json);
DROP FUNCTION IF EXISTS scenic_pay_lock(text, integer, text[]);
DROP FUNCTION IF EXISTS scenic_pay(json);
DROP FUNCTION IF EXISTS scenic_state_hooks(json, text, integer[], integer,
    timestamp);
DROP FUNCTION IF EXISTS scenic_order_answer(integer);
DROP FUNCTION IF EXISTS scenic_slot_sales_tickets(text, integer[], integer,
    timestamp);
DROP FUNCTION IF EXISTS scenic_slot_sales_refunds(text, integer[], integer,
    timestamp);
DROP FUNCTION IF EXISTS scenic_rate_add(text, timestamp, integer, timestamp,
    boolean);
DROP FUNCTION IF EXISTS scenic_hold_counts(integer, timestamp, text,
    integer, text, timestamp);
DROP FUNCTION IF EXISTS scenic_claim_stripe(integer, date, text, integer,
    integer, integer, integer, integer, integer);


-- A rate limit's counter (ratelimit.add on PostgreSQL): one more event for
-- the key in its window, the window's row made by its first event (a
-- racing first event counts on the row the other made). `durable` false:
-- this transaction's commit does not wait for the disk (the booking
-- engine's hold counter, committed on its own after the booking: a crash
-- may forget a few counts, never a booking).
CREATE FUNCTION scenic_rate_add(p_key text, p_window timestamp, uid integer,
        now timestamp, durable boolean)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT durable THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    UPDATE scenic_rate_limit r SET count = r.count + 1
        WHERE r.key = p_key
        AND r."window" = p_window;
    IF NOT FOUND THEN
        INSERT INTO scenic_rate_limit AS r (key, "window", count,
            create_uid, create_date)
        VALUES (p_key, p_window, 1, uid, now)
        ON CONFLICT (key, "window") DO UPDATE SET count = r.count + 1;
    END IF;
END;
$$;


-- A slot's unpaid holds, for reservation.check_holds (its limits are
-- decided there, in Python): {holds of this phone (NULL: of no phone),
-- persons held unpaid on this channel, this address's holds in the rate
-- window (NULL without a key or a row)}. Live holds only: `reserved` and
-- not expired at p_now.
-- Generic plans (see "Plans" above): planned for each call's values (the
-- Python read this replaces), the read cost 0.3-0.4 ms a booking, 10 times
-- its execution. The slot's holds are read through the partial index on
-- (slot, hold_expires_at) WHERE state = 'reserved': the generic plan takes
-- it over the expiry index (state, hold_expires_at) of the same predicate
-- whenever the table's statistics hold reserved orders (the slot's
-- equality is the more selective). Statistics without any (a database
-- analysed with no hold) make the two indexes equally cheap and the plan
-- may take either, until the next ANALYZE of the table (autovacuum's)
-- plans it again.
CREATE FUNCTION scenic_hold_counts(p_slot integer, p_now timestamp,
        p_phone text, p_channel integer, p_rate_key text,
        p_window timestamp)
    RETURNS integer[] LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_phone integer;
    v_unpaid integer;
    v_rate integer;
BEGIN
    IF p_phone IS NULL THEN
        SELECT count(*) INTO v_phone FROM scenic_order o
            WHERE o.slot = p_slot AND o.state = 'reserved'
            AND o.hold_expires_at > p_now
            AND o.contact_phone IS NULL;
    ELSE
        SELECT count(*) INTO v_phone FROM scenic_order o
            WHERE o.slot = p_slot AND o.state = 'reserved'
            AND o.hold_expires_at > p_now
            AND o.contact_phone = p_phone;
    END IF;
    SELECT sum(l.persons) INTO v_unpaid
        FROM scenic_order o JOIN scenic_order_line l ON l."order" = o.id
        WHERE o.slot = p_slot AND o.state = 'reserved'
        AND o.hold_expires_at > p_now
        AND o.channel = p_channel;
    IF p_rate_key IS NOT NULL THEN
        SELECT r.count INTO v_rate FROM scenic_rate_limit r
            WHERE r.key = p_rate_key AND r."window" = p_window;
    END IF;
    RETURN ARRAY[v_phone, v_unpaid, v_rate];
END;
$$;


-- One claim of a day's counter in a scope (scenic_book's, for each scope):
-- add p_persons to the first stripe from the order's on (p_offset: the
-- rotation's start, (stripe + p_offset) % p_stripes ascending) that has
-- room (booked + persons <= its maximum: p_over for the first p_extra
-- stripes, p_base for the others) and that no other transaction holds;
-- its maximum is set with it. False: no such stripe (the caller falls back
-- to reservation's full claim). It never waits for a lock (see
-- reservation._update_free_stripe, which builds this statement for the
-- Python paths).
-- A generic plan: its arguments sit in the condition's arithmetic, which
-- made every custom plan look cheaper than the generic one (planned at
-- every call, 0.05-0.17 ms); both use the stripes' (company, date, scope,
-- stripe) key.
CREATE FUNCTION scenic_claim_stripe(p_company integer, p_date date,
        p_scope text, p_persons integer, p_base integer, p_over integer,
        p_extra integer, p_offset integer, p_stripes integer)
    RETURNS boolean LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    UPDATE scenic_daily_load_stripe s
        SET booked = s.booked + p_persons,
            maximum = CASE WHEN s.stripe < p_extra THEN p_over
                ELSE p_base END
        WHERE s.id = (SELECT f.id FROM scenic_daily_load_stripe f
            WHERE f.company = p_company
            AND f.date = p_date AND f.scope = p_scope
            AND f.booked + p_persons <= CASE
                WHEN f.stripe < p_extra THEN p_over ELSE p_base END
            ORDER BY (f.stripe + p_offset) % p_stripes
            LIMIT 1 FOR UPDATE SKIP LOCKED);
    RETURN FOUND;
END;
$$;


-- The slot-sales rollup (rollup.py): the tickets with these ids entered
-- `valid` (added to their groups' sold figures) or `revoked` (taken out; a
-- group left empty goes). One additive upsert, rows locked in (slot,
-- channel, ticket type) order. rollup.count_sales calls it on PostgreSQL,
-- the engine's payment through the hook registry: one place.
CREATE FUNCTION scenic_slot_sales_tickets(to_state text, ids integer[],
        uid integer, now timestamp)
    RETURNS void LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_sign integer := CASE WHEN to_state = 'revoked' THEN -1 ELSE 1 END;
    slots integer[];
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    WITH changed AS (
        INSERT INTO scenic_slot_sales AS s (company, slot, date, channel,
            ticket_type, tickets, persons, amount, refunded,
            refunded_amount, changed, create_uid, create_date)
        SELECT t.company, t.slot, t.visit_date, o.channel, t.ticket_type,
            count(*) * v_sign, sum(t.persons) * v_sign,
            COALESCE(sum(l.unit_price), 0) * v_sign, 0, 0, now, uid, now
        FROM scenic_ticket t JOIN scenic_order o ON o.id = t."order"
        JOIN scenic_order_line l ON l.id = t.line
        WHERE t.id = ANY(ids)
        GROUP BY t.company, t.slot, t.visit_date, o.channel, t.ticket_type
        ORDER BY t.slot, o.channel, t.ticket_type
        ON CONFLICT (slot, channel, ticket_type) DO UPDATE SET
            tickets = s.tickets + EXCLUDED.tickets,
            persons = s.persons + EXCLUDED.persons,
            amount = s.amount + EXCLUDED.amount,
            refunded = s.refunded + EXCLUDED.refunded,
            refunded_amount = s.refunded_amount + EXCLUDED.refunded_amount,
            changed = GREATEST(s.changed, EXCLUDED.changed),
            write_uid = EXCLUDED.create_uid,
            write_date = EXCLUDED.create_date
        RETURNING s.slot)
    SELECT array_agg(DISTINCT slot) INTO slots FROM changed;
    IF v_sign < 0 AND slots IS NOT NULL THEN
        DELETE FROM scenic_slot_sales WHERE slot = ANY(slots)
            AND tickets = 0 AND refunded = 0;
    END IF;
END;
$$;


-- The orders with these ids entered `refunded`: their tickets are added to
-- their groups' refunded figures.
CREATE FUNCTION scenic_slot_sales_refunds(to_state text, ids integer[],
        uid integer, now timestamp)
    RETURNS void LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO scenic_slot_sales AS s (company, slot, date, channel,
        ticket_type, tickets, persons, amount, refunded, refunded_amount,
        changed, create_uid, create_date)
    SELECT t.company, t.slot, t.visit_date, o.channel, t.ticket_type,
        0, 0, 0, count(*), COALESCE(sum(l.unit_price), 0), now, uid, now
    FROM scenic_ticket t JOIN scenic_order o ON o.id = t."order"
    JOIN scenic_order_line l ON l.id = t.line
    WHERE t."order" = ANY(ids)
    GROUP BY t.company, t.slot, t.visit_date, o.channel, t.ticket_type
    ORDER BY t.slot, o.channel, t.ticket_type
    ON CONFLICT (slot, channel, ticket_type) DO UPDATE SET
        tickets = s.tickets + EXCLUDED.tickets,
        persons = s.persons + EXCLUDED.persons,
        amount = s.amount + EXCLUDED.amount,
        refunded = s.refunded + EXCLUDED.refunded,
        refunded_amount = s.refunded_amount + EXCLUDED.refunded_amount,
        changed = GREATEST(s.changed, EXCLUDED.changed),
        write_uid = EXCLUDED.create_uid,
        write_date = EXCLUDED.create_date;
END;
$$;


-- An order as the API answers it (engine.Engine.order_from): the order,
-- its slot and area's timezone, its lines, and its tickets unless it is
-- reserved, expired or cancelled. Money as text (exact decimals).
CREATE FUNCTION scenic_order_answer(order_id integer)
    RETURNS json LANGUAGE plpgsql AS $$
BEGIN
RETURN (SELECT json_build_object(
    'id', o.id, 'reference', o.reference, 'state', o.state,
    'total', o.total::text, 'currency', c.code,
    'visit_date', o.visit_date, 'contact_name', o.contact_name,
    'hold_expires_at', o.hold_expires_at,
    'slot', json_build_array(s.id, s.zone, s.date, s.start_time,
        s.end_time, s.capacity, s.booked),
    'timezone', a.timezone,
    'lines', (SELECT COALESCE(json_agg(json_build_array(t.code, t.name,
                l.quantity, l.persons, l.unit_price::text, l.amount::text)
            ORDER BY l.id), '[]')
        FROM scenic_order_line l
        JOIN scenic_ticket_type t ON t.id = l.ticket_type
        WHERE l."order" = o.id),
    'tickets', CASE WHEN o.state IN ('reserved', 'expired', 'cancelled')
        THEN '[]'::json ELSE (
        SELECT COALESCE(json_agg(json_build_array(k.id, t.code, k.state,
                k.code, k.holder_masked, k.persons, k.entries_allowed,
                k.valid_from, k.valid_until) ORDER BY k.id), '[]')
        FROM scenic_ticket k
        JOIN scenic_ticket_type t ON t.id = k.ticket_type
        WHERE k."order" = o.id) END)
FROM scenic_order o
JOIN currency_currency c ON c.id = o.currency
JOIN scenic_time_slot s ON s.id = o.slot
JOIN company_company a ON a.id = o.company
WHERE o.id = order_id);
END;
$$;


-- A payment's first step: lock the order of this reference and channel,
-- read what paying it needs (the payments so far, the area's active
-- signing key) and then, in a statement of its own (it sees what a
-- payment it waited for committed), the tickets in the states that may
-- become valid (`sources`) with what their codes sign. NULL: no such order.
CREATE FUNCTION scenic_pay_lock(reference text, channel integer,
        sources text[])
    RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    o record;
    tickets json;
BEGIN
    SELECT s.id, s.state, s.total, s.hold_expires_at, s.company,
        s.currency, c.code,
        (SELECT sum(p.amount) FROM scenic_payment p
            WHERE p."order" = s.id AND p.kind = 'payment') AS paid,
        k.key_id, k.private_key_encrypted
    INTO o
    FROM scenic_order s JOIN currency_currency c ON c.id = s.currency
    LEFT JOIN LATERAL (SELECT key_id, private_key_encrypted
        FROM scenic_signing_key WHERE company = s.company
        AND state = 'active' ORDER BY id LIMIT 1) k ON true
    WHERE s.reference = scenic_pay_lock.reference
        AND s.channel = scenic_pay_lock.channel
    FOR UPDATE OF s;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE(json_agg(json_build_array(t.id, t.ticket_type,
            t.valid_from, t.valid_until, t.persons, t.entries_allowed,
            t.holder_hash) ORDER BY t.id), '[]')
    INTO tickets
    FROM scenic_ticket t WHERE t."order" = o.id AND t.state = ANY(sources);
    RETURN json_build_object('id', o.id, 'state', o.state,
        'total', o.total::text, 'expires', o.hold_expires_at,
        'company', o.company, 'currency', o.currency, 'code', o.code,
        'paid', o.paid::text, 'key_id', o.key_id,
        'key', o.private_key_encrypted, 'tickets', tickets);
END;
$$;


-- The state-change hook after a move in SQL: call each SQL listener's
-- declared function (`hooks`: their names, workflow.sql_hook_functions)
-- with (to_state, ids, uid, now), in order, when the move moved any row.
CREATE FUNCTION scenic_state_hooks(hooks json, to_state text, ids integer[],
        uid integer, now timestamp)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    hook text;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    FOR hook IN SELECT json_array_elements_text(hooks) LOOP
        EXECUTE format('SELECT %I($1, $2, $3, $4)', hook)
            USING to_state, ids, uid, now;
    END LOOP;
END;
$$;


-- A payment's write, once the Python side checked it may be paid
-- (reservation.check_payable), charged it and signed the codes: insert the
-- payment, move the tickets to `valid` with their codes, call the tickets'
-- hooks, move the order to `paid`, call the order's hooks; return the
-- answer (scenic_order_answer) and the ids moved.
--   p: {order, company, provider, provider_reference, amount, currency,
--       now, uid, key_id, tickets: [ids], codes: [codes],
--       ticket_sources, order_sources: [states],
--       ticket_hooks, order_hooks: [function names]}
CREATE FUNCTION scenic_pay(p json)
    RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    order_id integer := (p->>'order')::integer;
    uid integer := (p->>'uid')::integer;
    now timestamp := (p->>'now')::timestamp;
    moved integer[];
    paid integer[];
BEGIN
    INSERT INTO scenic_payment (company, "order", kind, provider,
        provider_reference, amount, currency, date, create_uid,
        create_date)
    VALUES ((p->>'company')::integer, order_id, 'payment', p->>'provider',
        p->>'provider_reference', (p->>'amount')::numeric,
        (p->>'currency')::integer, now, uid, now);
    WITH m AS (
        UPDATE scenic_ticket t SET state = 'valid', code = c.code,
            key_id = (p->>'key_id')::integer, write_date = now,
            write_uid = uid
        FROM (SELECT * FROM unnest(
                ARRAY(SELECT json_array_elements_text(p->'tickets'))
                    ::integer[],
                ARRAY(SELECT json_array_elements_text(p->'codes')))
            AS u(id, code)) c
        WHERE t.id = c.id AND t.state = ANY(ARRAY(
            SELECT json_array_elements_text(p->'ticket_sources')))
        RETURNING t.id)
    SELECT COALESCE(array_agg(id ORDER BY id), '{}') INTO moved FROM m;
    PERFORM scenic_state_hooks(p->'ticket_hooks', 'valid', moved, uid, now);
    WITH m AS (
        UPDATE scenic_order SET state = 'paid', paid_at = now,
            write_date = now, write_uid = uid
        WHERE id = order_id AND state = ANY(ARRAY(
            SELECT json_array_elements_text(p->'order_sources')))
        RETURNING id)
    SELECT COALESCE(array_agg(id), '{}') INTO paid FROM m;
    PERFORM scenic_state_hooks(p->'order_hooks', 'paid', paid, uid, now);
    RETURN json_build_object('answer', scenic_order_answer(order_id),
        'tickets', moved, 'orders', paid);
END;
$$;


-- A booking's write (reservation.write_booking's, for a BookingPlan):
-- insert the order, its lines, its visitors (new ones; in hash order) and
-- its tickets (state `reserved`), then claim, in the lock order, the
-- per-ID limits (sorted by hash), the slot's places, and the day's
-- counters by scope, each on the first stripe from the order's id on that
-- has room and no other booking holds. Returns
--   {"order": id} when all is claimed,
--   {"refused": "id_limit", "index": i} (the i-th ID claim) or
--   {"refused": "sold_out"}: the caller rolls back and refuses,
--   {"order": id, "daily_from": i}: the scopes from the i-th on found no
--   free stripe with room: the caller claims them (reservation's full
--   claim: waiting, splitting, first stripes of a day) in this transaction.
--   p: {order: {...columns}, lines: [{...}], visitors: [{...}],
--       tickets: [{line: index, ...}], id_claims: [[hash, limit]],
--       slot, persons, date, daily: [[scope, persons, base, over, extra]],
--       stripes, uid, now}
CREATE FUNCTION scenic_book(p json)
    RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    v_uid integer := (p->>'uid')::integer;
    v_now timestamp := (p->>'now')::timestamp;
    v_company integer := (p->'order'->>'company')::integer;
    v_date date := (p->>'date')::date;
    v_stripes integer := (p->>'stripes')::integer;
    v_order integer;
    v_lines integer[] := '{}';
    v_line integer;
    r record;
    i integer := 0;
BEGIN
    -- the idempotency replay (reservation._find_replay's rule): the key
    -- already used on the channel answers that order when the body is the
    -- same (its request_hash), is refused otherwise; nothing is written
    IF p->'order'->>'idempotency_key' IS NOT NULL THEN
        SELECT o.id, o.request_hash INTO r FROM scenic_order o
            WHERE o.channel = (p->'order'->>'channel')::integer
            AND o.idempotency_key = p->'order'->>'idempotency_key';
        IF FOUND THEN
            IF r.request_hash IS DISTINCT FROM
                    p->'order'->>'request_hash' THEN
                RETURN json_build_object('refused', 'idempotency_conflict');
            END IF;
            RETURN json_build_object('order', r.id, 'replayed', true);
        END IF;
    END IF;

    INSERT INTO scenic_order (company, reference, channel, slot,
        visit_date, state, contact_name, contact_phone, hold_expires_at,
        total, currency, idempotency_key, request_hash, create_uid,
        create_date)
    SELECT v_company, x.reference, x.channel, x.slot, v_date,
        'reserved', x.contact_name, x.contact_phone, x.hold_expires_at,
        x.total, x.currency, x.idempotency_key, x.request_hash, v_uid, v_now
    FROM json_to_record(p->'order') AS x(reference text, channel integer,
        slot integer, contact_name text, contact_phone text,
        hold_expires_at timestamp, total numeric, currency integer,
        idempotency_key text, request_hash text)
    RETURNING id INTO v_order;

    FOR r IN SELECT * FROM ROWS FROM (json_to_recordset(p->'lines')
                AS (ticket_type integer, quantity integer, persons integer,
                    unit_price numeric, amount numeric,
                    price_explanation text)) WITH ORDINALITY
            AS x(ticket_type, quantity, persons, unit_price, amount,
                price_explanation, n)
            ORDER BY n LOOP
        INSERT INTO scenic_order_line ("order", ticket_type, quantity,
            persons, unit_price, amount, price_explanation, create_uid,
            create_date)
        VALUES (v_order, r.ticket_type, r.quantity, r.persons,
            r.unit_price, r.amount, r.price_explanation, v_uid, v_now)
        RETURNING id INTO v_line;
        v_lines := v_lines || v_line;
    END LOOP;

    IF json_array_length(p->'visitors') > 0 THEN
        INSERT INTO scenic_visitor (company, name, id_type, id_encrypted,
            id_masked, id_hash, create_uid, create_date)
        SELECT v_company, x.name, x.id_type, x.id_encrypted, x.id_masked,
            x.id_hash, v_uid, v_now
        FROM json_to_recordset(p->'visitors') AS x(name text, id_type text,
            id_encrypted text, id_masked text, id_hash text)
        ORDER BY x.id_hash
        ON CONFLICT (company, id_hash) DO NOTHING;
    END IF;
    -- a statement of its own: its snapshot sees the visitors a booking we
    -- waited for above committed
    INSERT INTO scenic_ticket (company, "order", line, ticket_type, slot,
        visit_date, visitor, holder_hash, holder_masked, persons,
        entries_allowed, valid_from, valid_until, state, create_uid,
        create_date)
    SELECT v_company, v_order, v_lines[x.line + 1], x.ticket_type,
        (p->>'slot')::integer, v_date,
        -- a look-up by the unique (company, id_hash) index per ticket (a
        -- join would be planned for json_to_recordset's 100 rows)
        (SELECT v.id FROM scenic_visitor v WHERE v.company = v_company
            AND v.id_hash = x.holder_hash), x.holder_hash,
        x.holder_masked, x.persons, x.entries_allowed, x.valid_from,
        x.valid_until, 'reserved', v_uid, v_now
    FROM ROWS FROM (json_to_recordset(p->'tickets') AS (
            line integer, ticket_type integer, holder_hash text,
            holder_masked text, persons integer, entries_allowed integer,
            valid_from timestamp, valid_until timestamp)) WITH ORDINALITY
        AS x(line, ticket_type, holder_hash, holder_masked, persons,
            entries_allowed, valid_from, valid_until, n)
    ORDER BY x.n;

    FOR r IN SELECT x->>0 AS id_hash, (x->>1)::integer AS lim
            FROM json_array_elements(p->'id_claims') AS x LOOP
        INSERT INTO scenic_id_day_usage AS u (company, date, id_hash,
            count, create_uid, create_date)
        VALUES (v_company, v_date, r.id_hash, 1, v_uid, v_now)
        ON CONFLICT (company, date, id_hash) DO UPDATE
            SET count = u.count + 1
            WHERE r.lim IS NULL OR r.lim = 0 OR u.count < r.lim;
        IF NOT FOUND THEN
            RETURN json_build_object('refused', 'id_limit', 'index', i);
        END IF;
        i := i + 1;
    END LOOP;

    IF (p->>'persons')::integer > 0 THEN
        UPDATE scenic_time_slot SET booked = booked
                + (p->>'persons')::integer
            WHERE id = (p->>'slot')::integer
            AND booked + (p->>'persons')::integer <= capacity;
        IF NOT FOUND THEN
            RETURN json_build_object('refused', 'sold_out');
        END IF;
    END IF;

    i := 0;
    FOR r IN SELECT x->>0 AS scope, (x->>1)::integer AS persons,
            (x->>2)::integer AS base, (x->>3)::integer AS over,
            (x->>4)::integer AS extra
            FROM json_array_elements(p->'daily') AS x LOOP
        IF r.persons > 0 THEN
            IF NOT scenic_claim_stripe(v_company, v_date, r.scope,
                    r.persons, r.base, r.over, r.extra,
                    v_stripes - v_order % v_stripes, v_stripes) THEN
                RETURN json_build_object('order', v_order,
                    'daily_from', i);
            END IF;
        END IF;
        i := i + 1;
    END LOOP;
    RETURN json_build_object('order', v_order);
END;
$$;


-- scenic_book for a caller that sends the transaction's COMMIT with it, in
-- the same round trip (the booking engine): any answer but a booking
-- written whole (a refusal, a replay, scopes left to the Python claim) is
-- an error, so the transaction aborts and the COMMIT after it does not
-- run; the error's DETAIL is scenic_book's answer (codes and ids only),
-- for the caller to act on after its ROLLBACK as it would have on the
-- answer. Each such refusal is an ERROR line in the server's log; the
-- parameters (names, encrypted ID numbers) are not logged while
-- log_parameter_max_length_on_error is 0, its default.
CREATE FUNCTION scenic_book_whole(p json)
    RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    result json := scenic_book(p);
BEGIN
    IF result->>'refused' IS NOT NULL OR result->>'replayed' IS NOT NULL
            OR result->>'daily_from' IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001',
            MESSAGE = 'scenic_book: not written whole',
            DETAIL = result::text;
    END IF;
    RETURN result;
END;
$$;

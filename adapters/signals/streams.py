"""Events in from a Redis stream, read by a consumer group.

Each entry holds one event envelope as JSON in the field `event` (or a JSON list of them in
`events`). A consumer reads a batch with XREADGROUP, parks every entry that is not a valid
event in the dead-letter stream (`<stream>:dead`, with the reason and every problem) and
acknowledges it, hands the good ones to ONE `EventStore.ingest` call (one database
transaction) and acknowledges them only after that commits. Entries a consumer read and never
acknowledged (it died) stay pending in the group; another consumer takes them over with
XAUTOCLAIM once they have been idle for `claim_idle_ms`. Delivery is therefore at least once,
and the event store ignores an event id it already holds: each event is stored and folded once.

An entry delivered more than `max_deliveries` times (the count XPENDING keeps; it grows each
time an entry is claimed from a consumer that did not acknowledge it) is parked with the
reason `max-deliveries`. While the database is unreachable the batch in hand is kept and
retried; those retries do not count as deliveries.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from adapters import telemetry
from engine.signals.events import MAX_BATCH, Event, EventError, parse_event

log = logging.getLogger("postsale.streams")

DEFAULT_STREAM = "postsale:events"
DEFAULT_GROUP = "postsale"
DEAD_SUFFIX = ":dead"
# what a dead-letter entry adds to the original fields; an original field with one of these
# names is kept as `orig:<name>`
META = ("reason", "problems", "consumer", "delivered", "entry_id", "group", "parked_at")


def dead_stream(stream: str) -> str:
    return stream + DEAD_SUFFIX


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def entry_fields(event: Event) -> dict:
    """The stream entry for one event, with the trace context it is published in (if any)."""
    return {"event": json.dumps(event.as_json(), separators=(",", ":"), ensure_ascii=False), **telemetry.carrier()}


def trace_carrier(fields: dict) -> dict:
    """The W3C trace fields of a stream entry (`traceparent`, `tracestate`)."""
    return {k: _text(v) for k, v in ((_text(k), v) for k, v in fields.items()) if k in ("traceparent", "tracestate")}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class EntryError(Exception):
    """An entry that is not an event: why (the dead-letter reason) and every problem."""

    def __init__(self, reason: str, problems: list[dict]):
        self.reason = reason
        self.problems = problems
        super().__init__(f"{reason}: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems))


def decode_entry(fields: dict) -> list[Event]:
    """The events of one entry, or EntryError (reason: not-utf8, no-event, not-json, invalid-event)."""
    try:
        fields = {_text(k): _text(v) for k, v in fields.items()}
    except UnicodeDecodeError as exc:
        raise EntryError("not-utf8", [{"path": "$", "message": f"the entry is not UTF-8 text ({exc.reason})"}]) \
            from None
    if "event" in fields:
        key, many = "event", False
    elif "events" in fields:
        key, many = "events", True
    else:
        names = ", ".join(sorted(fields)) or "none"
        raise EntryError("no-event", [{"path": "$", "message": f"no field 'event' (or 'events'); fields: {names}"}])
    try:
        payload = json.loads(fields[key])
    except json.JSONDecodeError as exc:
        raise EntryError("not-json", [{"path": "$", "message": f"field '{key}' is not JSON: {exc.msg} at "
                                                               f"line {exc.lineno} column {exc.colno}"}]) from None
    problems = []
    if not many:
        items, paths = [payload], ["$"]
    elif not isinstance(payload, list) or not payload or len(payload) > MAX_BATCH:
        raise EntryError("invalid-event", [{"path": "$", "message": f"field 'events' must be a list of 1 to "
                                                                    f"{MAX_BATCH} events"}])
    else:
        items, paths = payload, [f"$[{i}]" for i in range(len(payload))]
    events = []
    for item, path in zip(items, paths):
        try:
            events.append(parse_event(item, path))
        except EventError as exc:
            problems += [{"path": p.path, "message": p.message} for p in exc.problems]
    if problems:
        raise EntryError("invalid-event", problems)
    return events


def is_outage(exc: Exception) -> bool:
    """A failure of the database or the network (retry the same batch later), as opposed to
    one caused by what the batch holds."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError as PoolTimeout
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, ConnectionError, TimeoutError, OSError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Outage(Exception):
    """The database did not take the batch; it is kept and retried, nothing is acknowledged."""


@dataclass
class Summary:
    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    acked: int = 0
    batches: int = 0
    retries: int = 0
    deleted: int = 0  # pending entries whose data was trimmed from the stream: acknowledged

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Item:
    entry_id: str
    fields: dict
    events: list = field(default_factory=list)
    delivered: int = 1


def _count(type_: str, result: str, n: int = 1) -> None:
    try:
        from adapters.metrics import EVENTS
        EVENTS.labels(type_, result).inc(n)
    except Exception:  # noqa: BLE001 - counting never stops ingestion
        pass


class Consumer:
    """One member of a consumer group. `step()` handles one batch; `run()` loops."""

    def __init__(self, redis, store, stream: str = DEFAULT_STREAM, group: str = DEFAULT_GROUP,
                 consumer: str | None = None, batch: int = 100, block_ms: int = 2000, claim_idle_ms: int = 60000,
                 max_deliveries: int = 5, clock=time.monotonic):
        self.redis = redis
        self.store = store
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.dead = dead_stream(stream)
        self.batch = max(1, batch)
        self.block_ms = max(0, block_ms)
        self.claim_idle_ms = max(0, claim_idle_ms)
        self.max_deliveries = max(1, max_deliveries)
        self.clock = clock
        self.summary = Summary()
        self._held: list[_Item] | None = None  # a batch the database has not taken yet
        self._own_first = True  # entries this consumer name read before a restart
        self._cursor = "0-0"
        self._next_claim = 0.0

    # ---- group ----
    def ensure_group(self) -> bool:
        """Create the group (and the stream) when missing, reading from the start; True if created."""
        from redis.exceptions import ResponseError
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            return True
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise

    def pending(self) -> int:
        """Entries the group delivered and nobody acknowledged yet."""
        return int(self.redis.xpending(self.stream, self.group)["pending"])

    @property
    def claim_every(self) -> float:
        """Seconds between looks for abandoned entries: a quarter of the idle time, 50 ms to 10 s."""
        return min(10.0, max(0.05, self.claim_idle_ms / 4000))

    # ---- one batch ----
    def step(self, block: bool = True) -> int:
        """Handle one batch: a held one first, then this consumer's own pending entries (after a
        restart), then abandoned ones (XAUTOCLAIM), then new ones. Returns the entries handled;
        raises Outage when the database did not take the batch (it is kept for the next step)."""
        if self._held:
            self.summary.retries += 1
            self._keep(self._held)
            return self._ingest(self._held)
        if self._own_first:
            got = self._read("0", block=False)
            if got:
                return self._handle(got, redelivered=True)
            self._own_first = False
        now = self.clock()
        if self._cursor != "0-0" or now >= self._next_claim:
            got = self._claim()
            if self._cursor == "0-0":
                self._next_claim = now + self.claim_every
            if got:
                self.summary.reclaimed += len(got)
                return self._handle(got, redelivered=True)
        got = self._read(">", block=block)
        return self._handle(got, redelivered=False) if got else 0

    def _read(self, start: str, block: bool) -> list:
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.batch,
                                      block=self.block_ms if block and self.block_ms else None)
        return reply[0][1] if reply else []

    def _claim(self) -> list:
        reply = self.redis.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms,
                                      start_id=self._cursor, count=self.batch)
        self._cursor = _text(reply[0])
        if len(reply) > 2 and reply[2]:
            # entries trimmed from the stream while pending: XAUTOCLAIM drops them from the group
            self.summary.deleted += len(reply[2])
        return reply[1]

    def _deliveries(self, ids: list[str]) -> dict[str, int]:
        """How often each of these entries (now this consumer's) was delivered, from XPENDING."""
        out, start, wanted = {}, ids[0], set(ids)
        while True:
            rows = self.redis.xpending_range(self.stream, self.group, min=start, max=ids[-1], count=1000,
                                             consumername=self.consumer)
            for r in rows:
                mid = _text(r["message_id"])
                if mid in wanted:
                    out[mid] = int(r["times_delivered"])
            if len(rows) < 1000 or wanted <= set(out):
                return out
            start = "(" + _text(rows[-1]["message_id"])

    def _handle(self, entries: list, redelivered: bool) -> int:
        self.summary.batches += 1
        items, gone = [], []
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            if not fields:  # trimmed from the stream while pending: nothing left to ingest
                gone.append(entry_id)
            else:
                items.append(_Item(entry_id, fields))
        if gone:
            self._ack(gone)
            self.summary.deleted += len(gone)
        if redelivered and items:
            counts = self._deliveries([i.entry_id for i in items])
            for i in items:
                i.delivered = counts.get(i.entry_id, 1)
        good, bad = [], []
        for i in items:
            if i.delivered > self.max_deliveries:
                bad.append((i, "max-deliveries", [{"path": "$", "message": f"delivered {i.delivered} times, more "
                                                                           f"than --max-deliveries {self.max_deliveries}"}]))
                continue
            try:
                i.events = decode_entry(i.fields)
            except EntryError as exc:
                bad.append((i, exc.reason, exc.problems))
                continue
            except Exception as exc:  # noqa: BLE001 - one entry the checks did not foresee: parked, not a crash
                log.exception("entry %s could not be read", i.entry_id)
                bad.append((i, "invalid-event", [{"path": "$", "message": f"could not be read: {type(exc).__name__}"}]))
                continue
            good.append(i)
        if bad:
            self._park(bad)
        if good:
            carriers = [trace_carrier(i.fields) for i in good]
            parents = {c.get("traceparent") for c in carriers if c.get("traceparent")}
            # one producer's trace: continue it; a batch from many: link to each
            parent = telemetry.context_of(carriers[0]) if len(parents) == 1 and all(carriers) else None
            with telemetry.tracer("postsale.streams").start_as_current_span(
                    f"consume {self.stream}", context=parent, kind=telemetry.SpanKind.CONSUMER,
                    links=telemetry.links_from(carriers) if parent is None else None,
                    attributes={"messaging.system": "redis", "messaging.destination.name": self.stream,
                                "messaging.consumer.group.name": self.group,
                                "messaging.batch.message_count": len(good)}):
                self._ingest(good)
        return len(entries)

    def _ingest(self, items: list[_Item]) -> int:
        """ONE transaction for the batch; acknowledge after it commits. A batch the database
        refuses because of its content is split until the entry at fault is found and parked."""
        groups = [items]
        while groups:
            group = groups.pop()
            events = [e for i in group for e in i.events]
            try:
                result = self.store.ingest(events)
            except Exception as exc:  # noqa: BLE001 - classified below
                if is_outage(exc):
                    self._held = [i for g in groups for i in g] + group
                    raise Outage(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
                if len(group) == 1:
                    log.warning("entry %s: the event store refused it: %s", group[0].entry_id, exc)
                    self._park([(group[0], "ingest-error",
                                 [{"path": "$", "message": f"{type(exc).__name__}: {exc}"[:2000]}])])
                else:
                    half = len(group) // 2
                    groups += [group[half:], group[:half]]
                continue
            self._ack([i.entry_id for i in group])
            self.summary.accepted += len(result.accepted)
            self.summary.duplicates += len(result.duplicates)
            types = {e.id: e.type for e in events}
            for eid in result.accepted:
                _count(types[eid], "accepted")
            for eid in result.duplicates:
                _count(types[eid], "duplicate")
        self._held = None
        return len(items)

    def _keep(self, items: list[_Item]) -> None:
        """Reset the idle time of a held batch, so no other consumer claims it while this one waits
        for the database (JUSTID: not counted as a delivery)."""
        try:
            self.redis.xclaim(self.stream, self.group, self.consumer, 0, [i.entry_id for i in items], justid=True)
        except Exception as exc:  # noqa: BLE001 - at worst another consumer claims it: duplicates only
            log.debug("could not keep the held batch: %s", exc)

    def _ack(self, ids: list[str]) -> None:
        if not ids:
            return
        with self.redis.pipeline(transaction=False) as p:
            for k in range(0, len(ids), 1000):
                p.xack(self.stream, self.group, *ids[k:k + 1000])
            acked = sum(int(n) for n in p.execute())
        self.summary.acked += acked

    def _park(self, bad: list[tuple]) -> None:
        """XADD each entry to the dead letter with why, and XACK it, in one MULTI."""
        at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        with self.redis.pipeline(transaction=True) as p:
            for item, reason, problems in bad:
                fields = {}
                for k, v in item.fields.items():
                    name = _text(k)
                    fields[f"orig:{name}" if name in META or name.startswith("orig:") else name] = v
                fields.update(reason=reason, problems=json.dumps(problems),  # ASCII: any text survives
                              consumer=self.consumer, delivered=str(item.delivered), entry_id=item.entry_id,
                              group=self.group, parked_at=at)
                p.xadd(self.dead, fields)
            p.xack(self.stream, self.group, *[item.entry_id for item, _, _ in bad])
            replies = p.execute()
        self.summary.dead_lettered += len(bad)
        self.summary.acked += int(replies[-1])
        for item, reason, problems in bad:
            log.warning("entry %s parked in %s: %s: %s", item.entry_id, self.dead, reason,
                        "; ".join(f"{p['path']}: {p['message']}" for p in problems)[:500])
            types = {e.type for e in item.events} or {"invalid"}
            for t in types:
                _count(t, "rejected")

    # ---- loops ----
    def drained(self) -> bool:
        """Nothing new for the group and nothing pending (in this consumer or any other)."""
        if self._held:
            return False
        info = next((g for g in self.redis.xinfo_groups(self.stream) if _text(g["name"]) == self.group), None)
        if info is None:
            return True
        lag = info.get("lag")
        if int(info["pending"]):
            return False
        if lag is not None:
            return int(lag) == 0
        return not self.redis.xrange(self.stream, "(" + _text(info["last-delivered-id"]), "+", count=1)

    def run(self, stop, once: bool = False, drain: bool = False, max_seconds: float | None = None,
            backoff_cap: float = 30.0) -> str:
        """Loop until `stop` is set (the batch in hand is finished and acknowledged first).

        once: one batch (without waiting for entries); drain: until drained(). Returns "done",
        "stopped", "timeout" or "outage" (once only; otherwise outages are retried with backoff)."""
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout
        started = self.clock()
        failures = 0
        while True:
            if stop.is_set():
                return "stopped"
            if max_seconds is not None and self.clock() - started > max_seconds:
                return "timeout"
            try:
                handled = self.step(block=not once)
                failures = 0
            except (Outage, RedisConnectionError, RedisTimeout) as exc:
                if once:
                    raise
                failures += 1
                wait = min(backoff_cap, 0.2 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
                what = "the database" if isinstance(exc, Outage) else "Redis"
                log.warning("%s is unavailable (%s); retrying in %.1fs", what, exc, wait)
                if isinstance(exc, (RedisConnectionError, RedisTimeout)):
                    self._own_first = True  # re-read what this consumer holds once Redis is back
                stop.wait(wait)
                continue
            if once:
                return "done"
            if not handled:
                if drain and self.drained():
                    return "done"
                if self.block_ms == 0:  # reads do not wait: do not spin
                    stop.wait(0.05)

    def leave(self) -> bool:
        """Remove this consumer from the group when it holds nothing (a clean stop)."""
        try:
            for c in self.redis.xinfo_consumers(self.stream, self.group):
                if _text(c["name"]) == self.consumer and int(c["pending"]) == 0:
                    self.redis.xgroup_delconsumer(self.stream, self.group, self.consumer)
                    return True
        except Exception:  # noqa: BLE001 - a stale name in XINFO CONSUMERS is harmless
            pass
        return False


# --------------------------------------------------------------------------- publish, dead letter

def publish(redis, stream: str, events: list[Event], chunk: int = 500) -> list[str]:
    """XADD every event, one pipeline; the entry ids in order."""
    ids = []
    with telemetry.tracer("postsale.streams").start_as_current_span(
            f"publish {stream}", kind=telemetry.SpanKind.PRODUCER,
            attributes={"messaging.system": "redis", "messaging.destination.name": stream,
                        "messaging.batch.message_count": len(events)}), redis.pipeline(transaction=False) as p:
        for k in range(0, len(events), chunk):
            for e in events[k:k + chunk]:
                p.xadd(stream, entry_fields(e))
            ids += [_text(x) for x in p.execute()]
    return ids


def dead_letters(redis, stream: str, count: int | None = None, ids: list[str] | None = None) -> list[dict]:
    """Parked entries, oldest first: id, reason, problems, original fields."""
    dead = dead_stream(stream)
    if ids:
        rows = []
        for i in ids:
            rows += redis.xrange(dead, i, i)
    else:
        rows = redis.xrange(dead, "-", "+", count=count)
    out = []
    for entry_id, raw in rows:
        fields = {_text(k): v for k, v in raw.items()}
        meta = {k: _text(fields[k]) for k in META if k in fields}
        original = {}
        for k, v in fields.items():
            if k in META:
                continue
            original[k[len("orig:"):] if k.startswith("orig:") else k] = v
        try:
            problems = json.loads(meta.get("problems", "[]"))
        except json.JSONDecodeError:
            problems = [{"path": "$", "message": meta.get("problems", "")}]
        out.append({"id": _text(entry_id), "reason": meta.get("reason"), "problems": problems,
                    "entry_id": meta.get("entry_id"), "consumer": meta.get("consumer"),
                    "delivered": int(meta["delivered"]) if meta.get("delivered", "").isdigit() else None,
                    "parked_at": meta.get("parked_at"), "fields": original})
    return out


def redrive(redis, stream: str, ids: list[str] | None = None) -> list[dict]:
    """Move parked entries (these ids, or all) back into the stream with their original fields;
    each XADD and the XDEL from the dead letter happen in one MULTI. Returns {id, new_id} or
    {id, missing: True} per entry."""
    dead = dead_stream(stream)
    if ids:
        wanted = dead_letters(redis, stream, ids=ids)
        found = {d["id"] for d in wanted}
        out = [{"id": i, "missing": True} for i in ids if i not in found]
    else:
        wanted, out = dead_letters(redis, stream), []
    for k in range(0, len(wanted), 500):
        chunk = wanted[k:k + 500]
        with redis.pipeline(transaction=True) as p:
            for d in chunk:
                p.xadd(stream, d["fields"])
                p.xdel(dead, d["id"])
            replies = p.execute()
        out += [{"id": d["id"], "new_id": _text(replies[2 * n])} for n, d in enumerate(chunk)]
    return out

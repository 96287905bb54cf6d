"""The I/O half of a route batch, on the ``route-io`` thread: given the batch's decisions, produce
what they route, write what fails to the DLQ, count every outcome, then flush.

``BatchFinisher.finish`` raises (nothing committed, the loop rewinds and retries) when an output
or a DLQ write is not acknowledged, except for an output the broker refuses for good: that one
goes to the DLQ as ``encode.too_large`` and its claim is released, so a replay goes through.
The caller publishes a batch's outcome counts and health (``publish``) once it has finished, or
drops them (``discard``) when the batch is to be retried. Health rows are written off this path,
at most once a second (``consumers.route.health_flush``).
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import KafkaError
from opentelemetry import trace

from consumers.route.health_flush import HealthFlush
from consumers.route.sinks import BatchSink, Pending, is_permanent
from router import codes, deadletters, redisconn
from router import headers as h
from router.deadletters import DeadLetter
from router.errors import EncodeError, OrderError, RecordError, RouterError
from router.health import HealthBatch, HealthWriter
from router.kafka import dlq_topic
from router.outcomes import Outcomes
from router.pipeline.records import Candidate, Claim, Decision, Inbound, Prepared
from router.pipeline.stages import RoutingTable, dlq_headers
from router.pipeline.state import StateStore
from router.progress import BROKER
from router.tracing import record_failure, sampled, start_child

log = logging.getLogger("router.route")
ACKED_LIMIT = 1_000_000
_tracer = trace.get_tracer("router.route")


class BatchFailed(RouterError):
    """The batch could not be finished; it is retried, nothing is committed."""

    code = codes.ROUTE_BATCH_FAILED
    reason: str = BROKER  # ``router_batches_failed``'s reason (``router.progress``)


@dataclass
class Staged:
    """A batch whose pure stages ran and whose decisions are being made on ``route-state``; its
    I/O half (produce → flush) comes next."""

    batch: list[Inbound]
    prepared: list[Prepared]
    now_ms: int
    pairs: list[tuple[Prepared, Candidate]]
    claims: list[Claim]
    decided: Future[list[Decision]] | None  # None: no candidates, nothing to decide


class BatchFinisher:
    """Produces, DLQs and counts one staged batch at a time (``finish``); owns the outcome counters
    and the health batch the worker publishes after each commit."""

    def __init__(self, table: RoutingTable, state: StateStore, sink: BatchSink, group: str,
                 health_client: redisconn.Sync | None) -> None:
        self.table = table
        self.state = state
        self.sink = sink
        self.group = group
        self.outcomes = Outcomes()
        self.health = HealthBatch()
        self.health_rows = HealthFlush(HealthWriter(table.key_prefix, success_field="last_routed_ms"), health_client)
        # Integrations with no delivery worker (no ``http``): routing a record is its success.
        self._routing_is_success = frozenset(i.name for found in table.by_topic.values() for i in found
                                             if not i.destination.http)
        # (source coords, integration) of outputs the broker acknowledged in a try of a batch that
        # then failed: the retry counts them routed without producing them again.
        self.acked: set[tuple[str, str]] = set()

    def finish(self, staged: Staged) -> None:
        """Wait for the batch's decisions (made on ``route-state``), produce outputs and DLQ records,
        flush; a record the broker refused for good goes to the DLQ (then flush again); any other
        failure raises BatchFailed. Dead letters are then recorded in the ledger, so a crash before
        the commit does not write them twice (``router.deadletters``)."""
        prepared, now_ms = staged.prepared, staged.now_ms
        decisions = staged.decided.result() if staged.decided is not None else []
        send, acked = self.sink.send, self.acked
        letters: list[_Letter] = []
        routed: Counter[tuple[str, str]] = Counter()  # (tenant, integration): counted per batch, not per record
        for (p, c), claim, decision in zip(staged.pairs, staged.claims, decisions, strict=True):
            if decision is not Decision.ROUTE and self._not_routed(p, c, claim, decision, letters):
                continue
            if acked and (p.inbound.coords, claim.field) in acked:
                routed[c.tenant, c.integration.name] += 1  # produced and acknowledged by an earlier try
                continue
            if c.headers[-1][0] == h.TRACEPARENT and self._sampled(c):  # the name test first: no call per record
                self._trace(c)
            send(c.integration.destination.topic, c.key, c.value, c.headers, (p, claim), False)
            routed[c.tenant, c.integration.name] += 1
        for (tenant, name), n in routed.items():
            self.outcomes.add("routed", tenant, name, n=n)
            if name in self._routing_is_success:
                self.health.ok(name, tenant, n)
        for p in prepared:
            for failure in p.failures:
                letters.append(_Letter(p, failure.error, failure.integration, None))
            if p.ignored:
                self.outcomes.add("ignored", p.tenant)
        written = self._dead_letter(letters, now_ms)
        failed = self.sink.flush()
        try:
            written += self._settle(failed, now_ms)
        except BatchFailed:
            self._remember_acked(self.sink.last_sends, failed)
            raise
        self.state.record_dead_letters([w.slot for w in written], [w.error.code for w in written])
        if acked:
            acked.difference_update((p.inbound.coords, c.integration.name) for p, c in staged.pairs)

    def _remember_acked(self, sends: list[tuple[str, bytes | None, bytes | None, object, bool]],
                        failed: list[Pending]) -> None:
        """Keep the outputs the broker acknowledged before the batch failed (none are known after a
        flush timeout), so the retry does not produce them again."""
        if any(item.error is not None and item.error.code() == KafkaError._TIMED_OUT for item in failed):
            return
        if len(self.acked) > ACKED_LIMIT:  # partitions revoked meanwhile left theirs: start afresh
            self.acked.clear()
        refused = {id(item.tag) for item in failed}
        for _topic, _key, _value, tag, is_dlq in sends:
            if not is_dlq and id(tag) not in refused:
                output: tuple[Prepared, Claim] = tag  # type: ignore[assignment]
                self.acked.add((output[0].inbound.coords, output[1].field))

    def _not_routed(self, p: Prepared, c: Candidate, claim: Claim, decision: Decision, letters: list[_Letter]
                    ) -> bool:
        """Count a duplicate or stale candidate; True when it is not delivered (dropped, or a dead
        letter added to ``letters``)."""
        name = c.integration.name
        if decision is Decision.DUPLICATE:
            self.outcomes.add("duplicate", c.tenant, name)
            return True
        policy = c.integration.on_stale
        if policy == "drop":
            self.outcomes.add("stale", c.tenant, name)
            return True
        if policy == "dlq":  # its claim was released by ``decide``
            err = OrderError(f"version {c.version} is not newer than the entity's watermark", code=codes.ORDER_STALE)
            letters.append(_Letter(p, err, name, claim))
            return True
        self.outcomes.add("stale_delivered", c.tenant, name)
        return False

    @staticmethod
    def _sampled(candidate: Candidate) -> bool:
        """Is the traceparent in the candidate's last header sampled? (the caller checked the name)"""
        value = candidate.headers[-1][1]
        return value is not None and sampled(value.decode())

    def _trace(self, candidate: Candidate) -> None:
        """A span for routing this record; the output carries the span's traceparent."""
        incoming = (candidate.headers[-1][1] or b"").decode()
        span, outgoing = start_child(_tracer, f"route {candidate.integration.name}", incoming, attributes={
            "router.tenant": candidate.tenant, "router.integration": candidate.integration.name,
            "router.event_id": candidate.event_id,
            "messaging.destination.name": candidate.integration.destination.topic})
        span.end()
        candidate.headers[-1] = (h.TRACEPARENT, outgoing.encode())

    def discard(self) -> None:
        """Forget the counts and health of a batch that failed: it is retried, and counted then."""
        self.outcomes.drop_batch()
        self.health.clear()

    def publish(self) -> None:
        """Publish the finished batch's outcome counts; hand its health to the writer thread (no
        Redis call here: this is the commit path)."""
        self.outcomes.commit_batch("route")
        self.health_rows.add(self.health)

    def close(self) -> None:
        """Write the health still pending (the worker is stopping)."""
        self.health_rows.close()

    @property
    def health_client(self) -> redisconn.Sync | None:
        """The Redis client health rows are written with (None: not recorded)."""
        return self.health_rows.client

    @health_client.setter
    def health_client(self, client: redisconn.Sync | None) -> None:
        self.health_rows.client = client

    def _integrations_of(self, inbound: Inbound) -> list[str]:
        """Every integration on the record's topic: a record that failed before selection concerns them all."""
        return [i.name for i in self.table.by_topic.get(inbound.topic, ())]

    def _dead_letter(self, letters: list[_Letter], now_ms: int) -> list[_Letter]:
        """Send each dead letter the ledger does not already hold; count it, and return those sent.

        One already written belongs to a record redelivered after a crash before its commit: it
        is in the DLQ once already, and counted as ``dlq_already_written``."""
        if not letters:
            return []
        group, prefix = self.group, self.table.key_prefix
        for letter in letters:
            i = letter.prepared.inbound
            letter.slot = deadletters.slot(prefix, group, DeadLetter(i.topic, i.partition, i.offset,
                                                                     letter.integration or ""))
        sent = []
        for letter, done in zip(letters, self.state.dead_lettered([x.slot for x in letters]), strict=True):
            p, err, name = letter.prepared, letter.error, letter.integration
            if done:
                self.outcomes.add("dlq_already_written", p.tenant, name or "", err.code)
                continue
            letter.headers = dlq_headers(p.inbound, err, group=group, integration=name, now_ms=now_ms)
            self.sink.send(dlq_topic(p.inbound.topic), p.inbound.key, p.inbound.value, letter.headers, letter, True)
            self.outcomes.add("dlq", p.tenant, name or "", err.code)
            _trace_dead_letter(p, err, name)
            for each in ([name] if name else self._integrations_of(p.inbound)):
                self.health.fail(each, p.tenant, err.code, err.message, p.inbound.value)
            sent.append(letter)
        return sent

    def _settle(self, failed: list[Pending], now_ms: int) -> list[_Letter]:
        """What the broker refused for good: an output goes to the DLQ (``encode.too_large``, its
        claim released), a dead letter goes again as a stub (``router.deadletters.stub``), so no
        record can stall its partition. Anything else (a timeout, a broker down, a stub refused)
        fails the batch. Returns the dead letters this added."""
        sent: list[_Letter] = []
        for _round in range(3):  # outputs → their dead letters → stubs of those
            if not failed:
                return sent
            letters = []
            for item in failed:
                if not is_permanent(item.error) or (item.is_dlq and getattr(item.tag, "stubbed", True)):
                    raise BatchFailed(f"{len(failed)} record(s) not acknowledged by the broker: {item.error}")
                if item.is_dlq:
                    self._send_stub(item.tag)  # type: ignore[arg-type]
                    continue
                prepared: Prepared
                claim: Claim | None
                prepared, claim = item.tag  # type: ignore[misc]
                err = EncodeError(f"the broker refused the output: {item.error}", code=codes.ENCODE_TOO_LARGE)
                letters.append(_Letter(prepared, err, claim.field if claim else None, claim))
            sent += self._dead_letter(letters, now_ms)
            releases = [x.claim for x in letters if x.claim is not None]
            if releases:
                self.state.release(releases)
            failed = self.sink.flush()
        raise BatchFailed(f"{len(failed)} record(s) not acknowledged by the broker: {failed[0].error}")

    def _send_stub(self, letter: _Letter) -> None:
        inbound = letter.prepared.inbound
        key, value, headers = deadletters.stub(inbound.key, inbound.value, letter.headers)
        letter.stubbed = True
        self.sink.send(dlq_topic(inbound.topic), key, value, headers, letter, True)
        log.warning("dead letter of %s too large for the broker: written as a stub (%d of %d bytes)",
                    inbound.coords, len(value), len(inbound.value or b""))


@dataclass(slots=True)
class _Letter:
    """A record (or one integration's share of it) on its way to the DLQ."""

    prepared: Prepared
    error: RecordError
    integration: str | None
    claim: Claim | None  # the claim released for it, if any
    slot: deadletters.Slot = ("", "")
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)  # as sent
    stubbed: bool = False  # sent again cut to fit: a refusal now fails the batch


def _trace_dead_letter(p: Prepared, err: RecordError, integration: str | None) -> None:
    """A ``dead-letter`` span with error status and the code, when the record's trace is sampled
    (dead letters are rare: the header scan costs nothing on the routed path)."""
    raw = next((v for k, v in p.inbound.headers if k == h.TRACEPARENT), None)
    if raw:
        record_failure(_tracer, f"dead-letter {integration or p.inbound.topic}", raw.decode("ascii", "replace"),
                       err.code, err.message, {"router.tenant": p.tenant, "router.integration": integration or "",
                                               "messaging.destination.name": dlq_topic(p.inbound.topic)})

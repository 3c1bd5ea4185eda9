"""The shadow comparator: a challenger model answers copies of live /predict requests, and its
answers are compared with the champion's, request by request. No client ever sees them.

`irisctl shadow start` runs it beside the stack (from the challenger's image):

    uvicorn --factory app.shadow:create_app --host 0.0.0.0 --port 8000 --lifespan on --no-access-log

- The edge copies each sampled /predict request here (nginx `mirror`, header X-Request-Id):
  POST /mirror/predict answers 202 at once and queues the copy; a full queue drops it (counted).
  So the champion's clients never wait for the challenger, however slow or gone it is.
- Workers send the queued copies to the challenger (IRIS_CHALLENGER), once each, no retry.
- The edge logs the champion's answer of each sampled request (its X-Iris-Predictions header,
  status and upstream time) to this process over syslog (UDP 5140).
- Both halves are joined on the request ID and compared: agreement (same species), the
  champion-by-challenger confusion of species, the mean absolute difference of the
  probabilities, each side's latency. GET /stats (JSON, for `irisctl status`), GET /metrics
  (Prometheus job `iris-api-shadow`), GET /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("uvicorn.error")

SYSLOG_PORT = 5140
# The tag of the edge's log lines (nginx: `access_log syslog:…,tag=irisshadow`).
SYSLOG_TAG = "irisshadow: "
# A half that waits longer than this for the other is given up.
JOIN_TIMEOUT = 30.0
MAX_PENDING = 20_000
# Latency samples kept per side for /stats's quantiles.
LATENCY_SAMPLES = 5_000
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_BODY_BYTES = 1 << 20

# One prediction: the species and the probability of each species.
Answer = list[tuple[str, dict[str, float]]]


def parse_header(value: str) -> Answer | None:
    """The champion's X-Iris-Predictions header (see app.main.predictions_header)."""
    if not value or value == "-":
        return None
    out: Answer = []
    for part in value.split(";"):
        probabilities: dict[str, float] = {}
        for pair in part.split("/"):
            name, sep, number = pair.partition("=")
            if not sep or not name:
                return None
            try:
                probabilities[name] = float(number)
            except ValueError:
                return None
        out.append((next(iter(probabilities)), probabilities))
    return out


def parse_body(body: bytes) -> Answer | None:
    """A /predict answer's predictions, from its JSON body."""
    try:
        predictions = json.loads(body)["predictions"]
        return [(str(p["species"]), {str(k): float(v) for k, v in p["probabilities"].items()}) for p in predictions]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# Species names come from the models' answers: at most this many distinct ones are kept as
# labels (Prometheus series, the confusion table), the rest count as "other".
MAX_SPECIES = 16
MAX_SPECIES_LENGTH = 40
# A challenger's answer larger than this is a failure, not read on.
MAX_ANSWER_BYTES = 1 << 20


class SpeciesNames:
    """Bounds the species names used as labels."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self.known:
            return name
        if len(self.known) >= MAX_SPECIES or len(name) > MAX_SPECIES_LENGTH or not name.isprintable():
            return "other"
        self.known.add(name)
        return name


@dataclass
class Champion:
    status: int
    # Seconds, as the edge measured the upstream (the last try's, when it retried).
    latency: float | None
    answer: Answer | None


def parse_log_line(datagram: bytes) -> tuple[str, Champion] | None:
    """One syslog datagram of the edge: `<190>Dec  4 07:00:00 irisshadow: ID|STATUS|TIME|PREDICTIONS`."""
    text = datagram.decode("utf-8", "replace")
    _, sep, message = text.partition(SYSLOG_TAG)
    if not sep:
        return None
    fields = message.strip().split("|")
    if len(fields) != 4 or not fields[0]:
        return None
    request_id, status, upstream_time, predictions = fields
    try:
        code = int(status)
    except ValueError:
        return None
    latency = None
    last = upstream_time.split(",")[-1].strip().split(":")[-1].strip()
    with contextlib.suppress(ValueError):
        latency = float(last)
    return request_id, Champion(code, latency, parse_header(predictions))


@dataclass
class Challenger:
    status: int  # 0: no answer (refused, timed out, gone)
    latency: float
    answer: Answer | None
    error: str = ""


def quantile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Stats:
    """Everything compared so far, in memory; the Prometheus series mirror it."""

    compared: int = 0
    predictions: int = 0
    agreed: int = 0
    abs_diff_sum: float = 0.0
    dropped: int = 0
    failed: int = 0
    unmatched: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    last_failure: str = ""
    latencies: dict[str, deque] = field(
        default_factory=lambda: {side: deque(maxlen=LATENCY_SAMPLES) for side in ("champion", "challenger")}
    )
    species: SpeciesNames = field(default_factory=SpeciesNames)

    def compare(self, champion: Champion, challenger: Challenger) -> Outcome:
        """Judge one request both answered; what it counted."""
        if champion.status != 200:
            # The champion refused it (a bad body): nothing to compare the challenger with.
            return Outcome("skipped")
        if challenger.status != 200 or challenger.answer is None:
            self.failed += 1
            self.last_failure = challenger.error or f"HTTP {challenger.status}"
            return Outcome("failed")
        if champion.answer is None or len(champion.answer) != len(challenger.answer):
            self.unmatched += 1
            return Outcome("unmatched")
        self.compared += 1
        if champion.latency is not None:
            self.latencies["champion"].append(champion.latency)
        self.latencies["challenger"].append(challenger.latency)
        pairs = []
        diffs = []
        for (ours, p_ours), (theirs, p_theirs) in zip(champion.answer, challenger.answer, strict=True):
            ours, theirs = self.species(ours), self.species(theirs)
            self.predictions += 1
            self.agreed += ours == theirs
            row = self.confusion.setdefault(ours, {})
            row[theirs] = row.get(theirs, 0) + 1
            names = set(p_ours) | set(p_theirs)
            diff = sum(abs(p_ours.get(n, 0.0) - p_theirs.get(n, 0.0)) for n in names) / max(len(names), 1)
            self.abs_diff_sum += diff
            pairs.append((ours, theirs))
            diffs.append(diff)
        return Outcome("compared", pairs, diffs)

    def as_json(self, queued: int) -> dict:
        def latency(side: str) -> dict:
            samples = list(self.latencies[side])
            p50, p95 = quantile(samples, 0.5), quantile(samples, 0.95)
            return {
                "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                "p95_ms": None if p95 is None else round(p95 * 1000, 2),
            }

        return {
            "compared": self.compared,
            "agreement": round(self.agreed / self.predictions, 4) if self.predictions else None,
            "predictions": self.predictions,
            "mean_abs_difference": round(self.abs_diff_sum / self.predictions, 4) if self.predictions else None,
            "dropped": self.dropped,
            "failed": self.failed,
            "unmatched": self.unmatched,
            "queued": queued,
            "confusion": self.confusion,
            "latency": {"champion": latency("champion"), "challenger": latency("challenger")},
            "last_failure": self.last_failure or None,
        }


@dataclass
class Outcome:
    kind: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    diffs: list[float] = field(default_factory=list)


@dataclass
class Pending:
    at: float
    champion: Champion | None = None
    challenger: Challenger | None = None
    # Dropped or given up: the other half, when it comes, is discarded.
    done: bool = False


class Joiner:
    """Joins the two halves of each request on its ID."""

    def __init__(self, stats: Stats, on_outcome=None, join_timeout: float = JOIN_TIMEOUT) -> None:
        self.stats = stats
        self.pending: dict[str, Pending] = {}
        self.on_outcome = on_outcome or (lambda *_: None)
        self.join_timeout = join_timeout

    def _entry(self, request_id: str, now: float) -> Pending:
        entry = self.pending.get(request_id)
        if entry is None:
            if len(self.pending) >= MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
            entry = self.pending[request_id] = Pending(at=now)
        return entry

    def dropped(self, request_id: str, now: float) -> None:
        self.stats.dropped += 1
        self.on_outcome(Outcome("dropped"), None, None)
        self._entry(request_id, now).done = True

    def champion(self, request_id: str, champion: Champion, now: float) -> None:
        entry = self._entry(request_id, now)
        entry.champion = champion
        self._settle(request_id, entry)

    def challenger(self, request_id: str, challenger: Challenger, now: float) -> None:
        entry = self._entry(request_id, now)
        entry.challenger = challenger
        self._settle(request_id, entry)

    def _settle(self, request_id: str, entry: Pending) -> None:
        if entry.done:
            if entry.champion is not None:
                del self.pending[request_id]
            return
        if entry.champion is None or entry.challenger is None:
            return
        del self.pending[request_id]
        self.on_outcome(self.stats.compare(entry.champion, entry.challenger), entry.champion, entry.challenger)

    def sweep(self, now: float) -> None:
        """Give up halves older than the join timeout: a challenger's answer whose champion line
        never came is unmatched."""
        for request_id in [k for k, e in self.pending.items() if now - e.at > self.join_timeout]:
            entry = self.pending.pop(request_id)
            if entry.challenger is not None and not entry.done:
                self.stats.unmatched += 1
                self.on_outcome(Outcome("unmatched"), None, None)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "iris_shadow_requests",
            "Shadowed /predict requests by outcome: compared, dropped (queue full), failed (on the "
            "challenger), unmatched (one half missing), skipped (the champion refused it).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("compared", "dropped", "failed", "unmatched", "skipped"):
            self.requests.labels(outcome=outcome)
        self.predictions = Counter(
            "iris_shadow_predictions",
            "Compared predictions by the champion's and the challenger's species (agreement: equal labels).",
            ["champion", "challenger"],
            registry=self.registry,
        )
        self.agreed = Counter(
            "iris_shadow_agreed_predictions",
            "Compared predictions where the challenger named the champion's species.",
            registry=self.registry,
        )
        self.difference = Counter(
            "iris_shadow_probability_difference",
            "Sum of the mean absolute differences of the probabilities, per compared prediction "
            "(divide by iris_shadow_predictions_total).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "iris_shadow_latency_seconds",
            "Latency of the shadowed /predict requests, by side (champion: as the edge measured it).",
            ["side"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued = Gauge("iris_shadow_queued", "Copies waiting for the challenger.", registry=self.registry)

    def outcome(self, outcome: Outcome, champion: Champion | None, challenger: Challenger | None) -> None:
        self.requests.labels(outcome=outcome.kind).inc()
        if outcome.kind != "compared":
            return
        for ours, theirs in outcome.pairs:
            self.predictions.labels(champion=ours, challenger=theirs).inc()
            if ours == theirs:
                self.agreed.inc()
        self.difference.inc(sum(outcome.diffs))
        if champion is not None and champion.latency is not None:
            self.latency.labels(side="champion").observe(champion.latency)
        if challenger is not None:
            self.latency.labels(side="challenger").observe(challenger.latency)


async def post(url: str, body: bytes, timeout: float) -> Challenger:
    """One POST /predict to the challenger on a fresh connection (HTTP/1.1, Connection: close)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 80
    started = time.monotonic()

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = (
                f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            raw = b""
            while chunk := await reader.read(65536):
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise ValueError(f"an answer over {MAX_ANSWER_BYTES} bytes")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        status_line, _, rest = raw.partition(b"\r\n")
        fields = status_line.split()
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        _, _, payload = rest.partition(b"\r\n\r\n")
        return status, payload

    try:
        status, payload = await asyncio.wait_for(exchange(), timeout)
    except TimeoutError:
        return Challenger(0, time.monotonic() - started, None, f"no answer within {timeout:g}s")
    except OSError as err:
        return Challenger(0, time.monotonic() - started, None, f"cannot reach the challenger: {err.strerror or err}")
    except ValueError as err:
        return Challenger(0, time.monotonic() - started, None, str(err))
    return Challenger(status, time.monotonic() - started, parse_body(payload) if status == 200 else None)


class Comparator:
    def __init__(self, challenger: str, queue_size: int, workers: int, timeout: float) -> None:
        self.challenger_url = challenger
        self.timeout = timeout
        self.workers = workers
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_size)
        self.stats = Stats()
        self.metrics = Metrics()
        # A copy may wait its turn behind a full queue of copies that each time out: its
        # champion half waits as long.
        wait = (queue_size / max(workers, 1) + 1) * timeout
        self.joiner = Joiner(self.stats, self.metrics.outcome, join_timeout=max(JOIN_TIMEOUT, 1.5 * wait))
        self.tasks: list[asyncio.Task] = []
        self.transport: asyncio.DatagramTransport | None = None

    def offer(self, request_id: str, body: bytes) -> None:
        try:
            self.queue.put_nowait((request_id, body))
        except asyncio.QueueFull:
            self.joiner.dropped(request_id, time.monotonic())

    async def work(self) -> None:
        while True:
            request_id, body = await self.queue.get()
            try:
                answer = await post(self.challenger_url, body, self.timeout)
            except Exception as err:  # whatever the challenger did, this worker goes on
                answer = Challenger(0, 0.0, None, f"{type(err).__name__}: {err}")
            self.joiner.challenger(request_id, answer, time.monotonic())

    async def sweeping(self) -> None:
        while True:
            await asyncio.sleep(5)
            self.joiner.sweep(time.monotonic())

    async def start(self) -> None:
        comparator = self

        class Syslog(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                parsed = parse_log_line(data)
                if parsed is not None:
                    comparator.joiner.champion(parsed[0], parsed[1], time.monotonic())

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(Syslog, local_addr=("0.0.0.0", SYSLOG_PORT))  # noqa: S104
        self.tasks = [asyncio.create_task(self.work()) for _ in range(self.workers)]
        self.tasks.append(asyncio.create_task(self.sweeping()))
        log.info(
            "shadowing /predict to %s (%d workers, queue %d)", self.challenger_url, self.workers, self.queue.maxsize
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.transport is not None:
            self.transport.close()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await self.start()
                    except OSError as err:
                        # uvicorn (--lifespan on) exits: the container is not healthy and
                        # `irisctl shadow start` shows this line.
                        await send({"type": "lifespan.startup.failed", "message": f"shadow comparator: {err}"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/mirror/predict" and method == "POST":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY_BYTES:
                    await respond(send, 413, b"")
                    return
            headers = dict(scope["headers"])
            request_id = headers.get(b"x-request-id", b"").decode("latin-1")
            if request_id:
                self.offer(request_id, body)
            await respond(send, 202, b"")
        elif path == "/stats" and method == "GET":
            stats = self.stats.as_json(self.queue.qsize())
            stats["challenger"] = self.challenger_url
            await respond(send, 200, json.dumps(stats).encode(), b"application/json")
        elif path == "/metrics" and method == "GET":
            self.metrics.queued.set(self.queue.qsize())
            await respond(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode())
        elif path == "/health" and method == "GET":
            await respond(send, 200, b'{"status":"ok"}', b"application/json")
        else:
            await respond(send, 404, b"")


async def respond(send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app() -> Comparator:
    """uvicorn's factory, configured from the environment."""
    return Comparator(
        challenger=os.environ.get("IRIS_CHALLENGER", "http://api-challenger:8000"),
        queue_size=int(os.environ.get("IRIS_SHADOW_QUEUE", "100")),
        workers=int(os.environ.get("IRIS_SHADOW_WORKERS", "8")),
        timeout=float(os.environ.get("IRIS_SHADOW_TIMEOUT", "5")),
    )

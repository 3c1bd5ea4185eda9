"""The shadow comparator (app.shadow): parsing both halves, joining them, comparing, and the
bounded queue in front of a slow challenger."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from fastapi.testclient import TestClient

from app import shadow
from tests.flowers import SETOSA, VERSICOLOR, VIRGINICA


def champion_line(request_id: str, status: int, upstream: str, predictions: str) -> bytes:
    return f"<190>Dec  4 07:00:00 irisshadow: {request_id}|{status}|{upstream}|{predictions}".encode()


def test_the_api_says_its_predictions_in_a_header_the_comparator_reads(client: TestClient):
    response = client.post("/predict", json={"items": [SETOSA, VERSICOLOR, VIRGINICA]})
    assert response.status_code == 200
    parsed = shadow.parse_header(response.headers["x-iris-predictions"])
    assert [species for species, _ in parsed] == ["setosa", "versicolor", "virginica"]
    body = shadow.parse_body(response.content)
    for (species, probabilities), (body_species, body_probabilities) in zip(parsed, body, strict=True):
        assert species == body_species
        assert probabilities == pytest.approx(body_probabilities, abs=1e-4)


def test_a_large_batch_has_no_header(client: TestClient):
    response = client.post("/predict", json={"items": [SETOSA] * 17})
    assert response.status_code == 200
    assert "x-iris-predictions" not in response.headers


def test_the_edge_log_line_is_parsed_with_the_last_upstream_time():
    parsed = shadow.parse_log_line(
        champion_line("abc", 200, "0.001, 0.004", "virginica=0.9000/setosa=0.0500/versicolor=0.0500")
    )
    assert parsed is not None
    request_id, champion = parsed
    assert request_id == "abc"
    assert champion.status == 200
    assert champion.latency == pytest.approx(0.004)
    assert champion.answer == [("virginica", {"virginica": 0.9, "setosa": 0.05, "versicolor": 0.05})]


@pytest.mark.parametrize(
    "line",
    [b"", b"no tag here", b"<190>irisshadow: a|b", b"<190>irisshadow: |200|0.1|x=1", b"\xff\xfeirisshadow: a|x|1|-"],
)
def test_garbage_datagrams_are_ignored(line: bytes):
    assert shadow.parse_log_line(line) is None


def test_a_champion_without_the_header_has_no_answer():
    parsed = shadow.parse_log_line(champion_line("id", 200, "-", "-"))
    assert parsed is not None
    assert parsed[1].answer is None
    assert parsed[1].latency is None


def challenger_of(species: str) -> shadow.Challenger:
    return shadow.Challenger(200, 0.002, [(species, {species: 1.0})])


def champion_of(species: str) -> shadow.Champion:
    return shadow.Champion(200, 0.001, [(species, {species: 1.0})])


def test_halves_are_joined_in_either_order_and_compared():
    stats = shadow.Stats()
    joiner = shadow.Joiner(stats)
    joiner.champion("1", champion_of("setosa"), 0)
    joiner.challenger("1", challenger_of("virginica"), 0)
    joiner.challenger("2", challenger_of("versicolor"), 0)
    joiner.champion("2", champion_of("versicolor"), 0)
    assert joiner.pending == {}
    out = stats.as_json(queued=0)
    assert out["compared"] == 2
    assert out["agreement"] == 0.5
    assert out["confusion"] == {"setosa": {"virginica": 1}, "versicolor": {"versicolor": 1}}
    # setosa 1 vs 0, virginica 0 vs 1: a mean of 2/2 over two species; identical: 0.
    assert out["mean_abs_difference"] == 0.5


def test_a_failing_challenger_counts_failed_and_a_dropped_copy_is_not_compared():
    stats = shadow.Stats()
    joiner = shadow.Joiner(stats)
    joiner.champion("1", champion_of("setosa"), 0)
    joiner.challenger("1", shadow.Challenger(0, 5.0, None, "no answer within 5s"), 0)
    joiner.dropped("2", 0)
    joiner.champion("2", champion_of("setosa"), 0)
    assert stats.failed == 1
    assert stats.dropped == 1
    assert stats.compared == 0
    assert stats.last_failure == "no answer within 5s"
    assert joiner.pending == {}


def test_a_request_the_champion_refused_is_skipped():
    stats = shadow.Stats()
    joiner = shadow.Joiner(stats)
    joiner.champion("1", shadow.Champion(422, 0.001, None), 0)
    joiner.challenger("1", shadow.Challenger(422, 0.001, None), 0)
    assert (stats.compared, stats.failed, stats.unmatched) == (0, 0, 0)


def test_a_challenger_answer_without_its_champion_line_is_unmatched_after_the_timeout():
    stats = shadow.Stats()
    joiner = shadow.Joiner(stats)
    joiner.challenger("1", challenger_of("setosa"), 0)
    joiner.sweep(1)
    assert stats.unmatched == 0
    joiner.sweep(shadow.JOIN_TIMEOUT + 1)
    assert stats.unmatched == 1
    assert joiner.pending == {}


def test_quantiles():
    assert shadow.quantile([], 0.5) is None
    samples = [float(i) for i in range(1, 101)]
    assert shadow.quantile(samples, 0.5) == 51.0
    assert shadow.quantile(samples, 0.95) == 96.0


def test_a_slow_challenger_fills_the_bounded_queue_and_copies_are_dropped_not_waited_for():
    async def scenario() -> dict:
        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.5)
            body = json.dumps({"predictions": [{"species": "setosa", "probabilities": {"setosa": 1.0}}]})
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        comparator = shadow.Comparator(f"http://127.0.0.1:{port}", queue_size=2, workers=1, timeout=5)
        comparator.tasks = [asyncio.create_task(comparator.work())]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(10):
            comparator.offer(str(i), b"{}")
            comparator.joiner.champion(str(i), champion_of("setosa"), 0)
            await asyncio.sleep(0)  # the worker takes the first copy
        offered_in = loop.time() - started
        await asyncio.sleep(2.0)
        await comparator.stop()
        server.close()
        out = comparator.stats.as_json(comparator.queue.qsize())
        out["offered_in"] = offered_in
        return out

    out = asyncio.run(scenario())
    assert out["offered_in"] < 0.1, "offering a copy waited for the challenger"
    # One at work, two queued, seven dropped; three answered in 1.5 s and compared.
    assert out["dropped"] == 7
    assert out["compared"] == 3
    assert out["agreement"] == 1.0
    assert out["latency"]["challenger"]["p50_ms"] >= 400


def test_a_challenger_that_is_gone_counts_failed():
    async def scenario() -> shadow.Challenger:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await shadow.post(f"http://127.0.0.1:{port}", b"{}", 1.0)

    answer = asyncio.run(scenario())
    assert answer.status == 0
    assert answer.error.startswith("cannot reach the challenger")


def test_the_comparator_answers_mirrored_copies_at_once_and_serves_its_stats_and_metrics():
    comparator = shadow.Comparator("http://127.0.0.1:9", queue_size=1, workers=0, timeout=1)
    with TestClient(comparator) as client:
        # No worker: the first copy waits in the queue, the second finds it full.
        assert client.post("/mirror/predict", content=b"{}", headers={"X-Request-Id": "a"}).status_code == 202
        assert client.post("/mirror/predict", content=b"{}", headers={"X-Request-Id": "b"}).status_code == 202
        stats = client.get("/stats").json()
        assert stats["dropped"] == 1
        assert stats["queued"] == 1
        assert stats["agreement"] is None
        metrics = client.get("/metrics").text
        assert 'iris_shadow_requests_total{outcome="dropped"} 1.0' in metrics
        assert client.get("/health").status_code == 200
        assert client.get("/nothing").status_code == 404


def test_species_labels_are_bounded():
    stats = shadow.Stats()
    joiner = shadow.Joiner(stats)
    for i in range(shadow.MAX_SPECIES + 5):
        joiner.champion(str(i), champion_of("setosa"), 0)
        joiner.challenger(str(i), challenger_of(f"species-{i}"), 0)
    joiner.champion("long", champion_of("setosa"), 0)
    joiner.challenger("long", challenger_of("x" * 100), 0)
    row = stats.confusion["setosa"]
    # "setosa" and 15 of the challenger's names are kept; the 6 others and the long one are not.
    assert len(row) == shadow.MAX_SPECIES
    assert row["other"] == 7


def test_a_copy_waiting_behind_a_full_queue_is_not_given_up_before_its_answer():
    comparator = shadow.Comparator("http://127.0.0.1:9", queue_size=100, workers=8, timeout=5)
    # 100 copies of 5 s each through 8 workers: up to ~68 s in the queue.
    assert comparator.joiner.join_timeout >= 68


def test_a_challenger_answer_too_large_is_a_failure():
    async def scenario() -> shadow.Challenger:
        async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (shadow.MAX_ANSWER_BYTES + 10))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(huge, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answer = await shadow.post(f"http://127.0.0.1:{port}", b"{}", 5.0)
        server.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer.status == 0
    assert "over" in answer.error


def test_a_worker_survives_whatever_the_challenger_does(monkeypatch: pytest.MonkeyPatch):
    async def broken(*_args) -> shadow.Challenger:
        raise RuntimeError("boom")

    async def scenario() -> shadow.Stats:
        monkeypatch.setattr(shadow, "post", broken)
        comparator = shadow.Comparator("http://127.0.0.1:9", queue_size=10, workers=1, timeout=1)
        worker = asyncio.create_task(comparator.work())
        for i in range(3):
            comparator.offer(str(i), b"{}")
            comparator.joiner.champion(str(i), champion_of("setosa"), 0)
        await asyncio.sleep(0.1)
        assert not worker.done()
        worker.cancel()
        return comparator.stats

    stats = asyncio.run(scenario())
    assert stats.failed == 3
    assert stats.last_failure == "RuntimeError: boom"


def test_the_comparator_fails_its_start_when_its_syslog_port_is_taken():
    import socket

    async def scenario() -> list[dict]:
        comparator = shadow.Comparator("http://127.0.0.1:9", queue_size=1, workers=0, timeout=1)
        messages = iter([{"type": "lifespan.startup"}])
        sent: list[dict] = []

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        await comparator({"type": "lifespan"}, receive, send)
        return sent

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", shadow.SYSLOG_PORT))  # noqa: S104 - the port the comparator wants
    try:
        sent = asyncio.run(scenario())
    finally:
        taken.close()
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "shadow comparator:" in sent[0]["message"]

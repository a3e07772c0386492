"""Attribution in worker processes: the same answers as the server process's own engine, typed
errors that keep the field at fault, balanced chunks, and a worker that dies fails only the call
it was in while the workers come back."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from mechscope.activation_server.engine.loading import EngineSpec, load_engine
from mechscope.activation_server.http.compute_processes import EngineProcesses, chunks_by_prompts
from mechscope.activation_server.errors import RequestError
from mechscope.activation_server.http.errors import NotReady
from mechscope.activation_server.schemas import AttributionRequest, AttributionResult
from tests.support.attribution_compare import assert_same_attribution
from tests.support.http_fixtures import IOI, IOI_CORRUPTED, LOSS


def request(i: int, **changes) -> AttributionRequest:
    node = {"kind": "mlp_neuron", "layer": i % 3, "index": 7 * i, "position": -1}
    body = {"prompts": [{"text": IOI, "interventions": [{"node": node, "mode": "zero"}]}, {"text": IOI_CORRUPTED}],
            "loss": LOSS, "top_k": 4 + i, **changes}
    return AttributionRequest.model_validate(body)


def test_chunks_are_consecutive_runs_of_about_equal_prompt_counts():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 5)
        requests = [AttributionRequest.model_validate({"prompts": [{"text": "a"}] * rng.randint(1, 8), "loss": LOSS})
                    for _ in range(rng.randint(1, 12))]
        chunks = chunks_by_prompts(requests, n)
        assert [r for c in chunks for r in c] == requests                  # every request once, in order
        assert all(chunks) and len(chunks) == min(n, len(requests))
        sizes = [sum(len(r.prompts) for r in c) for c in chunks]
        # no chunk exceeds a fair share by more than one request's prompts
        assert max(sizes) <= sum(sizes) / len(chunks) + max(len(r.prompts) for r in requests)


@pytest.fixture(scope="module")
def spec_and_processes(small_checkpoint):
    spec = EngineSpec(model=str(small_checkpoint[1]))
    processes = EngineProcesses(spec, 2, start_timeout_s=120)
    processes.start()
    yield spec, processes
    processes.shutdown()


def test_workers_answer_like_the_server_process_engine(spec_and_processes):
    spec, processes = spec_and_processes
    assert len(processes.worker_pids()) == 2 and os.getpid() not in processes.worker_pids()
    engine = load_engine(spec, verbose=False)
    requests = [request(i) for i in range(5)]
    requests[3] = request(3, loss={"targets": [" Mary Ann"], "distractors": [" John"]})   # two tokens: bad
    answers = processes.attribute_json(requests)
    for i, (r, answer) in enumerate(zip(requests, answers)):
        if i == 3:
            assert isinstance(answer, RequestError) and answer.field == "loss.targets[0]", answer
            continue
        got = AttributionResult.model_validate(json.loads(answer))
        assert_same_attribution(got, engine.attribute(r))


def test_a_dead_worker_fails_only_its_call_and_the_workers_restart(spec_and_processes):
    _, processes = spec_and_processes
    victim = processes.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(NotReady, match="exited unexpectedly"):
        processes.attribute_json([request(0), request(1)])
    deadline = time.monotonic() + 120
    while not processes.ready:
        assert time.monotonic() < deadline, "the compute processes did not restart"
        time.sleep(0.2)
    assert processes.restarts == 1 and victim not in processes.worker_pids()
    (answer,) = processes.attribute_json([request(2)])
    assert isinstance(answer, bytes) and json.loads(answer)["nodes"]

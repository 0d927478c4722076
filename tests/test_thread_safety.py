"""Steering hooks are per model: another thread using the same model gets a clear error, never a steered result.

Each test runs real threads on the demo model, ordered by events so that the overlap is certain.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable

import pytest
import torch

import steerlab
from steerlab import SteeringVector, steer
from steerlab.hooks import edit, record

PROMPTS = ["q : where is Varo ? a :", "the food was"]
BUSY = "This model is being steered by thread 'owner'.*per model.*copy.deepcopy\\(model\\).*serialize the calls"
TIMEOUT = 60  # seconds any thread waits for another before the test fails


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


def vector_for(model) -> SteeringVector:
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(3)) * 6
    return SteeringVector(direction, layers=1, model_name=model.name)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.forward(model.tokenize(PROMPTS))


def run_threads(*targets: tuple[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each ``(name, fn)`` in its own thread; their results (or raised exceptions) by name."""
    results: dict[str, Any] = {}

    def wrap(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                results[name] = fn()
            except BaseException as error:  # handed to the test
                results[name] = error
        return run

    threads = [threading.Thread(target=wrap(name, fn), name=name) for name, fn in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"thread {thread.name} hung"
    return results


def test_a_second_thread_is_refused_and_the_first_is_unaffected(model):
    vector = vector_for(model)
    before, snapshot, plain = logits(model), model.hook_snapshot(), model.generate(PROMPTS, max_new_tokens=4)
    with steer(model, vector, alpha=2.0):
        expected = model.generate(PROMPTS, max_new_tokens=4)
    assert expected != plain
    inside, done = threading.Event(), threading.Event()

    def owner() -> list[str]:
        with steer(model, vector, alpha=2.0):
            inside.set()
            assert done.wait(TIMEOUT)
            return model.generate(PROMPTS, max_new_tokens=4)

    def intruder() -> list[Exception]:
        assert inside.wait(TIMEOUT)
        errors = []
        attempts: list[Callable[[], Any]] = [
            lambda: steer(model, vector, alpha=-2.0).__enter__(),  # another steer: refused at its call
            lambda: record(model, "resid_post", layers=[0]).__enter__(),
            lambda: edit(model, lambda h, point: h, layers=[0]).__enter__(),
            lambda: model.generate(PROMPTS, max_new_tokens=4),  # a plain generation would come out steered
            lambda: model.forward(model.tokenize(PROMPTS)),
            lambda: model.hf_model(input_ids=model.tokenize(PROMPTS).input_ids),  # a direct call of the HF model
        ]
        try:
            for attempt in attempts:
                with pytest.raises(RuntimeError, match=BUSY) as caught:
                    attempt()
                errors.append(caught.value)
        finally:
            done.set()
        return errors

    results = run_threads(("owner", owner), ("intruder", intruder))
    assert not isinstance(results["intruder"], BaseException), results["intruder"]
    assert len(results["intruder"]) == 6
    assert "'intruder'" in str(results["intruder"][0])
    assert results["owner"] == expected
    assert model.hook_snapshot() == snapshot
    assert torch.equal(logits(model), before)
    assert model.generate(PROMPTS, max_new_tokens=4) == plain


def test_steering_is_refused_while_another_thread_runs_the_model(model):
    """A claim made while another thread's forward pass is running would steer half of it: refused."""
    vector = vector_for(model)
    before, snapshot = logits(model), model.hook_snapshot()
    running, release = threading.Event(), threading.Event()

    def pause_in_forward(module: torch.nn.Module, args: tuple) -> None:
        if threading.current_thread().name == "runner":
            running.set()
            assert release.wait(TIMEOUT)

    handle = model.hf_model.register_forward_pre_hook(pause_in_forward)
    try:
        def steerer() -> None:
            assert running.wait(TIMEOUT)
            try:
                with pytest.raises(RuntimeError, match="Thread 'runner' is running a forward pass.*per model"):
                    with steer(model, vector):
                        pass
            finally:
                release.set()

        results = run_threads(("runner", lambda: logits(model)), ("steerer", steerer))
    finally:
        handle.remove()
    assert results["steerer"] is None
    assert torch.equal(results["runner"], before)
    assert model.hook_snapshot() == snapshot


def test_one_model_object_per_thread_works_concurrently(model):
    vector = vector_for(model)
    with steer(model, vector, alpha=2.0):
        expected_steered = model.generate(PROMPTS, max_new_tokens=4)
    plain = model.generate(PROMPTS, max_new_tokens=4)
    copies = {"steered": copy.deepcopy(model), "plain": copy.deepcopy(model)}
    both_inside = threading.Barrier(2, timeout=TIMEOUT)

    def steered() -> list[str]:
        with steer(copies["steered"], vector, alpha=2.0):
            both_inside.wait()
            return copies["steered"].generate(PROMPTS, max_new_tokens=4)

    def unsteered() -> list[str]:
        with record(copies["plain"], "resid_post", layers=[0]):
            both_inside.wait()
            return copies["plain"].generate(PROMPTS, max_new_tokens=4)

    results = run_threads(("steered", steered), ("plain", unsteered))
    assert results == {"steered": expected_steered, "plain": plain}


def test_the_same_thread_may_nest_blocks(model):
    before = logits(model)
    with steer(model, vector_for(model)), record(model, "resid_post", layers=[1]) as recorded:
        with edit(model, lambda h, point: h, layers=[2]):
            model.generate(PROMPTS, max_new_tokens=2)
    assert len(recorded["blocks.1.hook_resid_post"]) == 2
    assert torch.equal(logits(model), before)

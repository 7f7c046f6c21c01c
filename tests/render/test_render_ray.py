"""Segments over Ray (ghostrt/render/workers.py): a local multi-node cluster (ray.cluster_utils.Cluster, a
0-CPU head and one-CPU worker nodes on this machine), 2 workers, equal to the one-process render; a node
killed mid-render still yields that output, with the retry in the books."""

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ray  # the [cluster] extra; make setup installs it
from ray.cluster_utils import Cluster

import test_render_jobs  # noqa: E402
import test_render_segments  # noqa: E402
from ghostrt.render import driver, jobs  # noqa: E402
from ghostrt.render.workers import RayPool  # noqa: E402
from test_render_jobs import StubSpec  # noqa: E402
from test_render_segments import decoded, keyframed_clip  # noqa: E402

FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}


@pytest.fixture(scope="module")
def cluster():
    for module in (test_render_jobs, test_render_segments, sys.modules[__name__]):     # the stub travels to the workers by value
        ray.cloudpickle.register_pickle_by_value(module)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 1024**2,
                                                      "_system_config": FAST_HEALTH})
    nodes = [c.add_node(**NODE) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, nodes
    ray.shutdown()
    c.shutdown()


class SlowStub(StubSpec):
    """The stub, a little slower per frame, so a node can be killed while its segments are in flight."""

    def load(self):
        loaded = super().load()
        inner = loaded.stream

        def stream(first_index):
            s = inner(first_index)
            batch = s.process_batch

            def slow(frames):
                time.sleep(0.03 * len(frames))
                return batch(frames)
            s.process_batch = slow
            return s
        loaded.stream = stream
        return loaded


def reference(clip: Path, out: Path, opts) -> list:
    (r,) = driver.render_jobs([jobs.Job(clip, out, (Path("s.jpg"),))], lambda job: StubSpec(), opts,
                              progress=False)
    assert r.status == "done"
    return decoded(out)


def assert_same(a, b, frames):
    assert len(a) == len(b) == frames and [p for p, _ in a] == [p for p, _ in b]
    assert max(int(np.abs(x - y).max()) for (_, x), (_, y) in zip(a, b)) <= 1


def test_two_ray_workers_render_segments_equal_to_one_process(cluster, tmp_path):
    clip = keyframed_clip(tmp_path / "t.mp4", frames=40, gop=8)
    opts = driver.RenderOptions(crf=0, batch=4, detect_every=3, segment_seconds=0.5)
    ref = reference(clip, tmp_path / "one.mp4", opts)
    pool = RayPool(address=cluster[0].address, workers=2, log=lambda line: None)
    pool.start(StubSpec())
    try:
        assert len(pool._actors) == 2
        assert len({name.split(":")[1] for _, name in pool._actors}) == 2        # two worker processes
        (r,) = driver.render_jobs([jobs.Job(clip, tmp_path / "ray.mp4", (Path("s.jpg"),))],
                                  lambda job: StubSpec(), opts, pool=pool, progress=False)
    finally:
        pool.close()
    assert (r.status, r.segments, r.retries) == ("done", 3, 0), r.reason
    assert_same(ref, decoded(tmp_path / "ray.mp4"), 40)
    assert test_render_segments.audio_packets(tmp_path / "one.mp4") == \
        test_render_segments.audio_packets(tmp_path / "ray.mp4")


@pytest.mark.slow
def test_a_node_killed_mid_render_still_yields_the_same_output(cluster, tmp_path):
    c, nodes = cluster
    clip = keyframed_clip(tmp_path / "t.mp4", frames=48, gop=8)
    opts = driver.RenderOptions(crf=0, batch=4, detect_every=3, segment_seconds=0.3)
    ref = reference(clip, tmp_path / "one.mp4", opts)
    lines = []
    pool = RayPool(address=c.address, workers=2, log=lines.append)
    pool.start(SlowStub())                              # one worker on each of the two nodes
    spare = c.add_node(**NODE)                          # where a replacement worker can go
    killed = threading.Event()
    run = pool.run

    def run_and_kill(tasks, on_done=None):
        def done(result):
            if not killed.is_set():
                killed.set()
                c.remove_node(nodes[1], allow_graceful=False)
            on_done(result)
        return run(tasks, done)
    pool.run = run_and_kill
    try:
        (r,) = driver.render_jobs([jobs.Job(clip, tmp_path / "ray.mp4", (Path("s.jpg"),))],
                                  lambda job: SlowStub(), opts, pool=pool, progress=False)
    finally:
        pool.close()
    assert killed.is_set()
    assert r.status == "done", r.reason
    assert r.retries >= 1 and any("resubmitted" in line for line in lines)
    assert_same(ref, decoded(tmp_path / "ray.mp4"), 48)
    assert jobs.summary_table([r]).count("retried") == 1
    del spare

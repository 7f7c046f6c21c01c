"""bench/streams_bench.py on a fake runner (fixed cost per call): the JSON has per-stream fps, p50/p99 and
aggregate faces/s for every N both ways, batching really merges streams, and the chart is written."""

import json
import time

import numpy as np
import pytest

from ghostrt.bench import streams_bench
from ghostrt.errors import GhostError


class PerCallRunner:
    """Costs 20 ms per run() call whatever its size: batching N streams should give about N times the faces/s."""

    def open(self, config):
        return {"config": config}

    def close(self, state):
        pass

    def run(self, items):
        time.sleep(0.02)
        return [(frame, {}) for _, frame in items]


def test_streams_report_fields_and_batching_gain(tmp_path):
    frames = [np.full((72, 128, 3), k, np.uint8) for k in range(4)]
    runs = streams_bench.collect(PerCallRunner(), lambda sid: None, frames, [1, 4], seconds=0.6, camera_fps=60,
                                 log=lambda *_: None)
    assert [(r["streams"], r["batching"]) for r in runs] == [(1, True), (1, False), (4, True), (4, False)]
    for r in runs:
        assert len(r["per_stream"]) == r["streams"]
        assert r["faces_per_s"] > 0 and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        assert all(s["frames_out"] > 0 for s in r["per_stream"].values())   # no stream starved
    on = next(r for r in runs if r["streams"] == 4 and r["batching"])
    off = next(r for r in runs if r["streams"] == 4 and not r["batching"])
    assert on["mean_batch"] > 2 and off["mean_batch"] == 1
    assert on["faces_per_s"] > 1.8 * off["faces_per_s"]
    machine = {"cpu": "test cpu", "cores": 2, "gpu": None}
    config = {"backend": "fake", "executors": {"generator": "fake fp32"}, "standin": True}
    report = streams_bench.build_report(runs, machine, config)
    json_path, png_path = streams_bench.output_paths(report, tmp_path)
    assert "-streams-" in json_path.name
    streams_bench.write_chart(report, png_path)
    from ghostrt.bench.stage_bench import write_json
    write_json(report, json_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["runs"][2]["per_stream_fps_mean"] == on["per_stream_fps_mean"]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_stream_counts_say_so():
    with pytest.raises(GhostError, match="--streams 1,x"):
        streams_bench.parse_counts("1,x")
    with pytest.raises(GhostError, match="at least 1"):
        streams_bench.parse_counts("0,2")
    assert streams_bench.parse_counts("8,1,2,2") == [1, 2, 8]

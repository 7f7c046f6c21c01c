"""`ghostrt bench --cluster` (bench/cluster_bench.py): a tiny clip with the stub processor, 1 and 2 workers on a
local Ray; the JSON has the machine, throughput, efficiency, Ray start-up and the per-segment overheads."""

import json

import ray

import test_render_jobs
import test_render_segments
from ghostrt.bench import cluster_bench
from test_render_jobs import StubSpec
from test_render_segments import keyframed_clip


def test_cluster_bench_records_efficiency_and_overheads(tmp_path):
    for module in (test_render_jobs, test_render_segments):
        ray.cloudpickle.register_pickle_by_value(module)
    clip = keyframed_clip(tmp_path / "t.mp4", frames=24, gop=6)
    out = cluster_bench.run_cluster(StubSpec(), clip, tmp_path, segment_seconds=0.25, crf=0, batch=4,
                                    log=lambda line: None)
    report = json.loads(out.read_text())
    assert out.name.endswith(".json") and "-cluster-" in out.name
    assert report["machine"]["cores"] >= 1 and report["ray_startup_s"] > 0 and report["segments"] >= 3
    assert [r["workers"] for r in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["frames"] == 24 and run["fps"] > 0 and run["stitch_s"] > 0 and run["transfer_bytes"] > 0
        assert run["efficiency"] == round(run["fps"] / (report["runs"][0]["fps"] * run["workers"]), 3)
        assert "transfer_overhead_per_segment_s" in run
    assert report["runs"][0]["efficiency"] == 1.0 and report["split_per_segment_s"] > 0
    assert not ray.is_initialized()

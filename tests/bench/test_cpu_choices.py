"""runtime/cpu_choices.py: the measured OpenVINO configs and the overlap A/B, on the tiny nets of
test_swap_image (seconds, not minutes). Speeds are never asserted: only that every pair was timed, the record is
complete and consistent, and the choice is the one its own numbers say."""

import json

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.bench import cpu_choices
from ghostrt.runtime.swap.core import Nets
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from test_swap_image import onnx_files, executors  # noqa: F401  (fixtures)
from test_video_swapper import BASE_KPS, ScriptedDetector, numbered_frames


@pytest.mark.parametrize("batch, parts, expected", [(1, 2, [1]), (2, 2, [1, 1]), (5, 2, [3, 2]), (8, 2, [4, 4]),
                                                    (3, 1, [3]), (3, 4, [1, 1, 1])])
def test_split_batch(batch, parts, expected):
    assert cpu_choices.split_batch(batch, parts) == expected

def test_summarize_and_pick_best():
    stats = cpu_choices.summarize([10.0, 12.0, 11.0, 30.0])
    assert stats["median_ms"] == 11.5 and stats["min"] == 10.0 and stats["max"] == 30.0 and stats["n"] == 4
    results = {"1": {"a": cpu_choices.summarize([5, 6, 7]), "b": cpu_choices.summarize([9, 10, 11])},
               "4": {"a": cpu_choices.summarize([4, 5, 9]), "b": cpu_choices.summarize([4.5, 4.6, 5.5])}}
    best = cpu_choices.pick_best(results)
    assert best["per_batch"]["1"] == {"config": "a", "median_ms": 6.0, "runner_up": "b", "clear": True}
    # batch 4: b's median 4.6 beats a's 5.0, but b's slowest (5.5) is above a's median: within the noise
    assert best["per_batch"]["4"]["config"] == "b" and best["per_batch"]["4"]["clear"] is False
    assert best["fastest"]["batch"] == 4 and best["fastest"]["config"] == "b"

def test_measure_choices_times_every_pair_and_writes_the_record(onnx_files, tmp_path):
    configs = cpu_choices.default_configs(2)
    record = cpu_choices.measure_choices({"generator": onnx_files["generator"]}, batches=(1, 2), rounds=2,
                                         log=lambda *_: None)
    model = record["models"]["generator"]
    assert set(model["results"]) == {"1", "2"}
    for batch, by_config in model["results"].items():
        assert set(by_config) == {c.name for c in configs}
        assert all(stats["n"] == 2 and stats["min"] <= stats["median_ms"] <= stats["max"]
                   for stats in by_config.values())
        fastest = min(by_config, key=lambda name: by_config[name]["median_ms"])
        assert model["best"]["per_batch"][batch]["config"] == fastest
    assert len(model["raw_ms_per_face"]) == 2 * len(configs)
    assert record["configs"]["throughput-2s"]["requests"] == 2
    path = cpu_choices.write_choices(record, tmp_path)
    assert path.name == f"cpu-choices-{record['date'][:10]}.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(record))

def test_throughput_config_runs_two_requests_at_once(onnx_files):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_files["generator"]))
    throughput = cpu_choices.TimedModel(core, model, cpu_choices.default_configs(2)[1])
    assert len(throughput.requests) == 2
    assert throughput.compiled.get_property("NUM_STREAMS") == 2
    assert throughput.time_batch(3) > 0

def test_missing_onnx_is_one_line_error(tmp_path):
    with pytest.raises(GhostError, match="does not exist"):
        cpu_choices.measure_choices({"generator": tmp_path / "nope.onnx"}, batches=(1,), rounds=1)

def test_measure_overlap_runs_both_modes_and_counts_frames(executors):
    script = {i: [BASE_KPS + [i, 0]] for i in range(6)}
    made = []

    def make(overlap):
        nets = Nets(detector=ScriptedDetector(script), arcface=executors["arcface"],
                    generator=executors["generator"], landmarks=executors["landmarks"])
        made.append(overlap)
        return VideoSwapper(nets, np.ones((1, 512), np.float32), batch=2, overlap=overlap)

    result = cpu_choices.measure_overlap(make, numbered_frames(6), 2, rounds=2, warmup=1, log=lambda *_: None)
    assert made.count(True) == made.count(False) == 3
    assert result["serial"]["n"] == result["overlap"]["n"] == 2 and len(result["speedup_per_round"]) == 2
    assert result["overlap_not_slower"] == (result["overlap"]["median_ms"] <= result["serial"]["median_ms"])

def test_time_stream_refuses_a_swapper_that_loses_frames():
    class LosesLast:
        def process_batch(self, frames):
            return frames[:-1]

        def flush(self):
            return []

    with pytest.raises(GhostError, match="returned 2 frames for 4"):
        cpu_choices.time_stream(LosesLast(), numbered_frames(4), 2)

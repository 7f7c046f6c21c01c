"""`make demo`'s result passes `ghostrt verify`: the demo command itself, run on the tiny test nets (the export
and weight resolution faked, everything after them real: Swapper.swap_image, signing, watermark, label)."""

import ghostrt
from ghostrt.cli import main
from ghostrt.export import models
from ghostrt.weights import resolve
from test_swap_image import onnx_files, tiny_cli  # noqa: F401  (fixtures)


def test_demo_result_passes_verify(tmp_path, capsys, monkeypatch, tiny_cli, onnx_files):  # noqa: F811
    monkeypatch.setattr(resolve, "resolve_weights", lambda *a, **k: resolve.WeightSet(
        folder=tmp_path, num_blocks=2, standin_models=["generator", "arcface", "detector", "landmarks"]))
    monkeypatch.setattr(models, "export_all", lambda *a, **k: {m: onnx_files.get(m, onnx_files["detector"])
                                                                for m in models.MODELS})
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "`ghostrt verify` on the result" in printed and "STAND-IN" in printed
    report = ghostrt.verify(out / "result.png")
    assert report.intact and report.c2pa_ghostrt and report.standin
    assert (out / "sheet.png").is_file()
    assert main(["verify", str(out / "result.png")]) == 0

"""The README's Python API example, run as written, from a folder holding the photos it names (Grace
Hopper's photo as me.jpg, a mirrored copy as me2.jpg, the astronaut as group.jpg)."""

import re
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    import matplotlib.cbook
    import skimage.data

    grace = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    grace.save(tmp_path / "me.jpg")
    grace.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "me2.jpg")
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "group.jpg", quality=95)
    for cache in ("engines", "weights"):          # the repo's exported ONNX and stand-ins, shared with the demo
        (REPO / cache).mkdir(exist_ok=True)
        (tmp_path / cache).symlink_to(REPO / cache)
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    res, many, mapped = namespace["res"], namespace["many"], namespace["mapped"]
    assert res.image.shape == (512, 512, 3) and res.image.dtype == np.uint8
    assert len(res.faces) >= 1 and len(res.swapped) >= 1 and not np.array_equal(res.image, namespace["frame"])
    assert [len(r.swapped) for r in many] == [len(res.swapped)] * 2 and len(mapped.swapped) == 1
    assert "generator" in out and "swapped" in out and "stand-in weights" in out
    assert set(res.timings) >= {"detect", "swap", "blend"}

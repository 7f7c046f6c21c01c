"""`ghostrt weights stand-in`: deterministic, seeded, UNTRAINED weights in the official formats and names.

They exist so every loader, export and stage runs offline and in CI. They carry no identity and produce no
real swap; the folder's README and standin.json say so, and everything downstream that uses them says so too.
"""

import json
from pathlib import Path

from ghostrt.version import __version__
from ghostrt.atomic import atomic_path

MARKER = "standin.json"
README = """UNTRAINED STAND-IN WEIGHTS -- NOT THE OFFICIAL GHOST MODELS

These files were written by `ghostrt weights stand-in` from seed {seed}. They have the official file
names, formats and tensor shapes, but their values are random: they detect no real faces (SCRFD),
identify nobody (ArcFace) and swap nothing meaningful (AEI-Net). Use them to test the pipeline only.
Any image made with them is labelled as made with stand-in weights.

Official weights: `ghostrt weights fetch`, or download the files listed in weights/manifest.json by hand.
"""

ALL_PARTS = ("generator", "arcface", "detector", "landmarks")


def is_standin_dir(folder) -> bool:
    return (Path(folder) / MARKER).exists()


def write_standins(out_dir, seed: int = 0, blocks=(1, 2, 3), parts=ALL_PARTS, log=print) -> list[Path]:
    """Write the stand-in set; deterministic, so the same seed gives the same bytes."""
    from ghostrt.export.aei_net import write_standin_generators
    from ghostrt.export.iresnet import write_standin_arcface
    from ghostrt.export.landmark106 import write_standin_landmarks
    from ghostrt.export.scrfd import write_standin_scrfd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "generator" in parts:
        written += write_standin_generators(out, seed=seed, blocks=tuple(blocks))
    if "arcface" in parts:
        written.append(write_standin_arcface(out, seed=seed))
    if "detector" in parts:
        written.append(write_standin_scrfd(out, seed=seed))
    if "landmarks" in parts:
        written += list(write_standin_landmarks(out, seed=seed))
    with atomic_path(out / "README.txt") as tmp:
        tmp.write_text(README.format(seed=seed))
    marker = {"untrained": True, "seed": seed, "ghostrt": __version__,
              "files": sorted(p.name for p in out.iterdir() if p.name not in (MARKER, "README.txt"))}
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=2) + "\n")
    for path in written:
        log(f"stand-in  {path.name:<24} {path.stat().st_size:>12,} bytes  (untrained)")
    return written

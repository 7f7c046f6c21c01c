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


# Stand-ins are known by content too, so a copied or renamed one is still labelled: the size and sha256 of every
# file `ghostrt weights stand-in` writes from the default seed 0 (deterministic; regenerate the table with
# `write_checksum_table(folder_of_seed_0_standins)` after changing a stand-in writer).
CHECKSUMS = Path(__file__).with_name("standin_sha256.json")


def is_standin_dir(folder) -> bool:
    return (Path(folder) / MARKER).exists()


def known_checksums() -> dict[int, set[str]]:
    """size -> sha256 values of the default-seed stand-in files (sizes first, so only a same-size file is hashed)."""
    table = json.loads(CHECKSUMS.read_text()) if CHECKSUMS.is_file() else {}
    sizes: dict[int, set[str]] = {}
    for entry in table.values():
        sizes.setdefault(int(entry["size"]), set()).add(entry["sha256"])
    return sizes


def checksum_table(*folders) -> dict:
    """{file name: {size, sha256}} of the stand-in files in `folders` (marker and README left out), sorted."""
    from ghostrt.checksum import sha256_file

    table = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for folder in folders for p in sorted(Path(folder).iterdir())
             if p.is_file() and p.name not in (MARKER, "README.txt")}
    return dict(sorted(table.items()))


def write_checksum_table(*folders) -> dict:
    """The table CHECKSUMS holds, from folders of seed-0 stand-ins (all generator depths between them)."""
    table = checksum_table(*folders)
    with atomic_path(CHECKSUMS) as tmp:
        tmp.write_text(json.dumps(table, indent=2) + "\n")
    return table


def is_standin_file(path) -> str | None:
    """Why `path` is a stand-in (its folder's marker, or its content), else None."""
    from ghostrt.checksum import sha256_file

    path = Path(path)
    if is_standin_dir(path.parent):
        return f"{path.parent / MARKER} marks the folder"
    digests = known_checksums().get(path.stat().st_size)
    if digests and sha256_file(path) in digests:
        return "its sha256 is a stand-in's"
    return None


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

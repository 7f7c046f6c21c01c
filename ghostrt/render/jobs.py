"""The jobs of one `ghostrt render` run: from --target/--output-dir or a jobs file (JSON lines or TOML), which
are already done (resumable after a crash), and the summary table."""

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ghostrt.errors import GhostError, file_error

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg")
JOB_KEYS = {"source", "target", "output", "target_face", "faces", "similarity", "crf", "batch", "detect_every",
            "codec"}


@dataclass
class Job:
    target: Path
    output: Path
    sources: tuple[Path, ...]
    target_faces: tuple[Path, ...] = ()
    options: dict = field(default_factory=dict)     # per-job overrides of the run's options


@dataclass
class JobResult:
    job: Job
    status: str                    # done, skipped, failed
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""
    retries: int = 0
    segments: int = 0
    standin: tuple[str, ...] = ()  # nets that ran untrained stand-in weights (the CLI's banner)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _paths(value, base: Path) -> tuple[Path, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(p if p.is_absolute() else base / p for p in (Path(str(v)) for v in items))


def targets_of(targets: list[Path]) -> list[Path]:
    """--target values with folders expanded to the videos inside them (sorted by name)."""
    found = []
    for t in targets:
        if t.is_dir():
            videos = sorted(p for p in t.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not videos:
                raise file_error(t, "folder holds no video files (" + ", ".join(VIDEO_SUFFIXES[:4]) + ", …)")
            found += videos
        else:
            found.append(t)
    return found


def jobs_from_targets(targets: list[Path], sources: list[Path], target_faces: list[Path],
                      output: Path | None, output_dir: Path | None) -> list[Job]:
    videos = targets_of(targets)
    if output is not None:
        if len(videos) != 1:
            raise GhostError(f"--output names one file but there are {len(videos)} targets; use --output-dir")
        outputs = [output]
    else:
        if output_dir is None:
            raise GhostError("give --output-dir OUT/ (each output is OUT/<the target's file name>) or --output")
        if not output_dir.is_dir():
            raise file_error(output_dir, "--output-dir is not an existing folder")
        outputs = [output_dir / v.name for v in videos]
    names = [o.resolve() for o in outputs]
    if len(set(names)) != len(names):
        raise GhostError("two targets have the same file name, so their outputs would collide in --output-dir")
    return [Job(v, o, tuple(sources), tuple(target_faces)) for v, o in zip(videos, outputs)]


def load_jobs_file(path: Path, sources: list[Path], target_faces: list[Path]) -> list[Job]:
    """JSON lines ({"source": [...], "target": ..., "output": ..., options}) or TOML ([[job]] tables);
    relative paths are relative to the jobs file; a job without "source" uses --source."""
    try:
        text = path.read_text()
    except OSError as err:
        raise file_error(path, f"cannot read the jobs file ({err.strerror or err})") from None
    rows = []
    try:
        if path.suffix.lower() == ".toml":
            rows = tomllib.loads(text).get("job", [])
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise file_error(path, f"not valid {'TOML' if path.suffix == '.toml' else 'JSON lines'} ({err})") from None
    base = path.parent
    jobs = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "target" not in row or "output" not in row:
            raise file_error(path, f"job {n}: needs at least \"target\" and \"output\"")
        unknown = set(row) - JOB_KEYS
        if unknown:
            raise file_error(path, f"job {n}: unknown key(s) {', '.join(sorted(unknown))}")
        src = _paths(row["source"], base) if "source" in row else tuple(sources)
        if not src:
            raise file_error(path, f"job {n}: no \"source\" and no --source")
        faces = _paths(row["target_face"], base) if "target_face" in row else tuple(target_faces)
        options = {k: v for k, v in row.items() if k not in ("source", "target", "output", "target_face")}
        jobs.append(Job(_paths(row["target"], base)[0], _paths(row["output"], base)[0], src, faces, options))
    if not jobs:
        raise file_error(path, "holds no jobs")
    return jobs


def is_complete(job: Job) -> bool:
    """An output exists only once whole (atomic rename), and carries ghostrt's label: then it is done."""
    if not job.output.is_file():
        return False
    from ghostrt.runtime.io.video_writer import read_video_label

    try:
        return read_video_label(job.output) is not None
    except Exception:
        return False


def summary_table(results: list[JobResult]) -> str:
    rows = [("job", "frames", "fps", "status", "reason")]
    for r in results:
        status = r.status + (f" ({r.retries} retried)" if r.retries else "")
        rows.append((r.job.target.name, str(r.frames) if r.frames else "-", f"{r.fps:.1f}" if r.fps else "-",
                     status, r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]
                     for row in rows).rstrip()

"""Section 1 of device_bench: the GHOST-style anchor. GHOST's nets timed the way GHOST runs them (PyTorch eager,
G.half() as a whole on a GPU, ArcFace fp32), each net alone and inside ghostrt's ReferencePipeline stage.

Imported as a sibling of device_bench.py (the script's folder is on sys.path); torch arrives as an argument and
ghostrt through device_bench's import shim, so the top level needs only numpy.
"""

import numpy as np
from timing import VIDEO_BATCH, stats_ms, time_calls

SCOPE_NET = "net only: inputs already on the device in the net's dtype, output left there; CUDA events"
SCOPE_STAGE = ("GHOST stage via ghostrt's ReferencePipeline: uint8 224 crops in, host resize/normalise, "
               "copies, net, .cpu() readback; host clock")


def measure(torch, model, precision, scope, make_call, batches, plan, budget, cuda) -> list[dict]:
    """One row per batch; make_call(batch) prepares inputs and returns the no-argument call to time."""
    rows = []
    for batch in batches:
        if budget.expired():
            rows.append({"model": model, "batch": batch, "scope": scope, "status": "skipped: budget spent"})
            continue
        call = make_call(batch)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            samples, stopped = time_calls(torch, call, plan["warmup"], plan["reps"][batch], budget,
                                          cuda and scope == SCOPE_NET)
        per_call = stats_ms(samples)
        row = {"model": model, "precision": precision, "batch": batch, "scope": scope, "per_call": per_call,
               "per_face_p50_ms": per_call["p50_ms"] / batch if samples else None,
               "per_face_p99_ms": per_call["p99_ms"] / batch if samples else None, "stopped_early": stopped}
        if cuda:
            row["peak_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        rows.append(row)
        del call
    return rows


def net_call(torch, net, make_inputs, dtype, device):
    def make_call(batch):
        feeds = [torch.from_numpy(v).to(device, dtype) for v in make_inputs(batch).values()]
        return lambda: net(*feeds)
    return make_call


def stage_call(method, with_identities: bool):
    """ReferencePipeline.generate / .embed on random uint8 224 crops (random, never zeros) and identities."""
    from ghostrt.export.aei_net import seeded_embeddings

    def make_call(batch):
        crops = np.random.default_rng(batch).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        if not with_identities:
            return lambda: method(crops)
        identities = seeded_embeddings(batch, batch + 1)
        return lambda: method(crops, identities)
    return make_call


def half_vs_float(torch, net32, make_inputs, device) -> dict:
    """The fp16 G is only a fair anchor if it computes the same function: ‖y16 − y32‖/‖y32‖ at batch 1
    (fp32 with TF32 off as the reference), and whether fp16 stayed finite."""
    import copy

    feeds = list(make_inputs(1).values())
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        y32 = net32(*[torch.from_numpy(v).to(device) for v in feeds])[0].double()
        net16 = copy.deepcopy(net32).half()
        y16 = net16(*[torch.from_numpy(v).to(device, torch.float16) for v in feeds])[0].double()
    torch.backends.cudnn.allow_tf32 = previous
    rel = float(torch.linalg.vector_norm(y16 - y32) / torch.linalg.vector_norm(y32))
    return {"rel_l2": rel if np.isfinite(rel) else None, "finite": bool(torch.isfinite(y16).all()), "net16": net16}


def section_reference(torch, budget, cuda, smoke) -> dict:
    """GHOST's nets the way GHOST runs them: G.half() as a whole on a GPU (InstanceNorm included; fp32 on a
    CPU), ArcFace in fp32. Each net alone, then the first G and ArcFace as GHOST's stages (host work included)."""
    from ghostrt.export.aei_net import generator_inputs, standin_generator
    from ghostrt.export.iresnet import arcface_inputs, standin_arcface
    from ghostrt.export.reference_pipeline import ReferenceNets, ReferencePipeline

    device = torch.device("cuda" if cuda else "cpu")
    if smoke:
        blocks, batches = (1,), (1,)
        plan = {"warmup": 0, "reps": {1: 1}}
    else:
        blocks, batches = (2, 1), (1, VIDEO_BATCH)
        plan = {"warmup": 10, "reps": {1: 200, VIDEO_BATCH: 50}}
    out = {"results": [], "plan": {"g_blocks": list(blocks), "batches": list(batches), "warmup": plan["warmup"],
                                   "reps": {str(k): v for k, v in plan["reps"].items()}},
           "scopes": [SCOPE_NET, SCOPE_STAGE], "cuda_events": cuda}
    half = torch.float16 if cuda else torch.float32
    precision = "fp16" if cuda else "fp32"
    for num_blocks in blocks:
        model = f"G_{num_blocks}block"
        if budget.left() < 20:
            out["results"].append({"model": model, "status": "skipped: budget spent"})
            continue
        net = standin_generator(num_blocks).to(device)
        if cuda:
            check = half_vs_float(torch, net, generator_inputs, device)
            net = check.pop("net16")
            out[f"{model}_fp16_vs_fp32"] = check
        out["results"] += measure(torch, model, precision, SCOPE_NET, net_call(torch, net, generator_inputs, half,
                                                                               device), batches, plan, budget, cuda)
        if num_blocks == blocks[0]:
            pipeline = ReferencePipeline(ReferenceNets(None, None, net, None, device, g_half=cuda))
            out["results"] += measure(torch, model, precision, SCOPE_STAGE, stage_call(pipeline.generate, True),
                                      batches, plan, budget, cuda)
            del pipeline
        del net
        if cuda:
            torch.cuda.empty_cache()
    if budget.left() < 10:
        out["results"].append({"model": "arcface", "status": "skipped: budget spent"})
        return out
    arcface = standin_arcface().to(device)
    out["results"] += measure(torch, "arcface", "fp32", SCOPE_NET, net_call(torch, arcface, arcface_inputs,
                                                                            torch.float32, device),
                              batches, plan, budget, cuda)
    pipeline = ReferencePipeline(ReferenceNets(None, arcface, None, None, device))
    out["results"] += measure(torch, "arcface", "fp32", SCOPE_STAGE, stage_call(pipeline.embed, False), batches, plan,
                              budget, cuda)
    return out

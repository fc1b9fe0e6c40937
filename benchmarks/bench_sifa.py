"""Seconds per SIFA iteration, ours and a straight-line loop of the same networks and losses, in fp32
and with the opt-in fast settings, measured in one process with the variants interleaved (so a busy
machine slows all of them alike); medians and ratios. Also the share of our step spent drawing
batches from the in-memory slice cache ("data loading").

Scales: `demo` is the `sifa_demo` preset (80x80, batch 4+4, width 0.25, G_t ngf 16 / 6 blocks as the
warm start, ndf 32); `paper` is 256x256, batch 8+8, width 1.0 (G_t ngf 32 / 9 blocks, E up to 512
channels); `port` is 128x128, batch 2+2, width 1.0, the scale of issue 18's side-by-side run with
the unofficial SIFA-pytorch port (ours fp32 took 0.93x the port's time there). One iteration is seven optimizer steps (G_t, D_t, E+C, U, D_s, D_p1, D_p2), each on a
fresh forward pass, as the official code.

Settings (train-block switches, see README "SIFA"): `fp32` is the presets' `amp: "off"`; `bf16` adds
bf16 autocast; `fast` is bf16 + channels_last + fused Adam; `fast_compile` adds torch.compile, whose
compile time (the first iterations) is printed and amortised over `--amortise` iterations.

The straight-line loop is the same seven updates written out by hand on the same network objects:
no loss-term dict, image pools, schedulers, loss reads or checkpoints; it shows what our loop costs
on top of the arithmetic.

    python benchmarks/bench_sifa.py --scales demo --iters 7
    python benchmarks/bench_sifa.py --scales paper --iters 2 --settings fp32 fast
    python benchmarks/bench_sifa.py --scales port --iters 5 --settings fp32 fast --straight
    python benchmarks/bench_sifa.py --dev-project DIR --iters 0     # dev-split Dice of fast vs fp32 only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xmodseg.methods.sifa import Sifa
from xmodseg.methods.sifa_losses import l2_weight_decay, segmentation_loss
from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision, to_device
from xmodseg.training.trainable import TrainData

SCALES: dict[str, tuple[int, dict[str, Any]]] = {
    "demo": (80, {"batch_size": 4, "width": 0.25, "generator": {"ngf": 16, "n_blocks": 6, "skip": False}, "ndf": 32}),
    "paper": (256, {"batch_size": 8, "width": 1.0}),
    # issue 18's side-by-side with the SIFA-pytorch port: 128x128, batch 2, full width
    "port": (128, {"batch_size": 2, "width": 1.0}),
}
SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": "off"},
    "bf16": {"amp": "bf16"},
    "bf16_cl": {"amp": "bf16", "channels_last": True},
    "fast": {"amp": "bf16", "channels_last": True, "optimizer_impl": "fused"},
    "fast_compile": {"amp": "bf16", "channels_last": True, "optimizer_impl": "fused", "compile": True},
}
NUM_CLASSES = 5


class TimedSliceSet(SliceSet):
    """A slice set that adds the time spent in `sample` to a shared counter."""

    spent: list[float] = [0.0]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        t0 = time.perf_counter()
        out = super().sample(batch_size, generator)
        TimedSliceSet.spent[0] += time.perf_counter() - t0
        return out


def build(size: int, params: dict[str, Any], setting: dict[str, Any]) -> tuple[Sifa, TrainData]:
    torch.manual_seed(0)
    precision = choose_precision(choose_device("auto"), setting.get("amp", "off"))
    method = Sifa({**params, **setting, "iterations": 10_000}, NUM_CLASSES, precision)
    g = torch.Generator().manual_seed(0)
    n = 64
    src = SliceSet(torch.randn(n, 1, size, size, generator=g), torch.randint(NUM_CLASSES, (n, size, size), generator=g), ("s",), "mr")
    data = method.prepare(TrainData(src, SliceSet(torch.randn(n, 1, size, size, generator=g), None, ("t",), "ct")))
    assert data.source is not None and data.target is not None
    timed = TrainData(TimedSliceSet(data.source.images, data.source.labels, ("s",), "mr"), TimedSliceSet(data.target.images, None, ("t",), "ct"))
    return method, timed


def straight_step(m: Sifa, data: TrainData, sampler: torch.Generator) -> None:
    """One full-SIFA iteration written out: the same forward passes, losses and updates as
    `Sifa.train_step` with the default switches, and nothing else."""
    assert data.source is not None and data.target is not None and m.d_p1 is not None and m.d_p2 is not None
    d_p1, d_p2 = m.d_p1, m.d_p2
    p, cl, autocast = m.params, m.params.channels_last, m.precision.autocast
    x_s, y_s = data.source.sample(m.batch_size, sampler)
    x_t = data.target.sample(m.batch_size, sampler)[0]
    assert y_s is not None
    x_s, y_s, x_t = to_device(x_s, m.device, cl), y_s.to(m.device), to_device(x_t, m.device, cl)
    nets = [m.g_t, m.seg, m.dec, m.d_t, m.d_s, d_p1, d_p2]
    lam = p.lambda_cycle

    def update(net: torch.nn.Module, name: str, loss_fn: Callable[[], torch.Tensor]) -> None:
        for n in nets:
            n.requires_grad_(n is net)
        with autocast():
            loss = loss_fn()
        m.opts[name].zero_grad(set_to_none=True)
        loss.backward()
        m.opts[name].step()

    def g_loss() -> torch.Tensor:
        with torch.no_grad():
            x_ts = m.dec(m.seg.encoder(x_t)[0], x_t)
        x_st = m.g_t(x_s)
        out["x_st"] = x_st
        return lam * (l1(m.dec(m.seg.encoder(x_st)[0], x_st), x_s) + l1(m.g_t(x_ts), x_t)) + lsgan_generator(m.d_t(x_st))

    def seg_loss() -> torch.Tensor:
        with torch.no_grad():
            x_st = m.g_t(x_s)
        f_st, main_st, aux_st = m.seg.logits(x_st)
        f_t, main_t, aux_t = m.seg.logits(x_t)
        assert aux_st is not None and aux_t is not None
        x_ts = m.dec(f_t, x_t)
        scores = m.d_s(x_ts)
        decoder = lam * (l1(m.dec(f_st, x_st), x_s) + l1(m.g_t(x_ts), x_t)) + lsgan_generator(scores[:, :1])
        out["x_st"] = x_st
        return (
            segmentation_loss(main_st, y_s) + p.weight_decay * l2_weight_decay([m.seg]) + p.lambda_seg_aux * segmentation_loss(aux_st, y_s)
            + p.lambda_encoder_image * decoder + p.lambda_adv_aux * lsgan_generator(scores[:, 1:])
            + p.lambda_adv_p1 * lsgan_generator(d_p1(main_t)) + p.lambda_adv_p2 * lsgan_generator(d_p2(aux_t))
        )

    def u_loss() -> torch.Tensor:
        with torch.no_grad():
            f_st, out["main_st"], out["aux_st"] = m.seg.logits(out["x_st"])
            f_t, out["main_t"], out["aux_t"] = m.seg.logits(x_t)
        x_ts, x_sts = m.dec(f_t, x_t), m.dec(f_st, out["x_st"])
        out["x_ts"], out["x_sts"] = x_ts, x_sts
        return lam * (l1(x_sts, x_s) + l1(m.g_t(x_ts), x_t)) + lsgan_generator(m.d_s(x_ts)[:, :1])

    def d_s_loss() -> torch.Tensor:
        fake = m.d_s(out["x_ts"].detach())
        return lsgan_discriminator(m.d_s(x_s)[:, :1], fake[:, :1]) + lsgan_discriminator(m.d_s(out["x_sts"].detach())[:, 1:], fake[:, 1:])

    out: dict[str, Any] = {}
    update(m.g_t, "g_t", g_loss)
    update(m.d_t, "d_t", lambda: lsgan_discriminator(m.d_t(x_t), m.d_t(out["x_st"].detach())))
    update(m.seg, "seg", seg_loss)
    update(m.dec, "dec", u_loss)
    update(m.d_s, "d_s", d_s_loss)
    update(d_p1, "d_p1", lambda: lsgan_discriminator(d_p1(out["main_st"]), d_p1(out["main_t"])))
    update(d_p2, "d_p2", lambda: lsgan_discriminator(d_p2(out["aux_st"]), d_p2(out["aux_t"])))
    for n in nets:
        n.requires_grad_(True)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_scale(scale: str, settings: list[str], straight: list[str], iters: int, amortise: int) -> None:
    size, params = SCALES[scale]
    built = {s: build(size, params, SETTINGS[s]) for s in settings}
    gens = {s: torch.Generator().manual_seed(0) for s in settings}
    variants: list[tuple[str, str, Callable[[], Any]]] = []
    for s, (m, data) in built.items():
        variants.append((s, "ours", lambda m=m, data=data, s=s: m.train_step(data, gens[s], 0)))
        if s in straight:
            variants.append((s, "straight", lambda m=m, data=data, s=s: straight_step(m, data, gens[s])))
    first: dict[tuple[str, str], float] = {}
    for s, kind, fn in variants:  # warm-up: allocations, oneDNN primitive caches, compilation
        first[s, kind] = timed(fn, built[s][0].device)
    times: dict[tuple[str, str], list[float]] = {(s, k): [] for s, k, _ in variants}
    loading: dict[str, list[float]] = {s: [] for s in settings}
    print(f"{scale} first iterations: " + ", ".join(f"{s}/{k} {t:.1f} s" for (s, k), t in first.items()), file=sys.stderr, flush=True)
    for r in range(iters):  # interleaved: every round times each variant once
        for s, kind, fn in variants:
            TimedSliceSet.spent[0] = 0.0
            times[s, kind].append(timed(fn, built[s][0].device))
            if kind == "ours":
                loading[s].append(TimedSliceSet.spent[0] / times[s, kind][-1])
        print(f"{scale} round {r + 1}: " + ", ".join(f"{s}/{k} {t[-1]:.2f} s" for (s, k), t in times.items()), file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med.get(("fp32", "ours"))
    base_straight = med.get(("fp32", "straight"))
    p = params
    print(f"\n{scale}: sifa {size}x{size}, batch {p['batch_size']}+{p['batch_size']}, width {p['width']}, {torch.get_num_threads()} thread(s), "
          f"{iters} interleaved rounds, medians")
    print(f"{'setting':13s} {'loop':9s} {'s/it':>8s} {'min':>8s} {'max':>8s} {'first it':>9s} {'ours/straight':>14s} {'x fp32 ours':>12s} {'x fp32 straight':>16s} {'loading':>8s}")
    for (s, kind), t in med.items():
        ratio = f"{t / med[s, 'straight']:.2f}" if kind == "ours" and (s, "straight") in med else ""
        vs_ours = f"{base / t:.2f}" if base else ""
        vs_straight = f"{base_straight / t:.2f}" if base_straight else ""
        share = f"{100 * statistics.median(loading[s]):.2f}%" if kind == "ours" else ""
        print(f"{s:13s} {kind:9s} {t:8.3f} {min(times[s, kind]):8.3f} {max(times[s, kind]):8.3f} {first[s, kind]:9.1f} {ratio:>14s} {vs_ours:>12s} {vs_straight:>16s} {share:>8s}")
    for s in settings:
        if SETTINGS[s].get("compile"):
            compile_s = first[s, "ours"] - med[s, "ours"]
            total, eager = compile_s + amortise * med[s, "ours"], amortise * med.get(("fast", "ours"), med[s, "ours"])
            print(f"{s}: compile time ~{compile_s:.0f} s (first iteration minus the median); over {amortise} iterations "
                  f"{total:.0f} s vs {eager:.0f} s without compile ({'pays' if total < eager else 'does not pay'})")
    print("x fp32 ours: speed-up over our fp32 iteration; x fp32 straight: over the straight-line fp32 loop (higher is faster)")


def constant_until(train: dict[str, Any]) -> float:
    """The last iteration before a run's learning rate starts to decay (linear: decay_start x T)."""
    schedule = train.get("lr_schedule", "constant")
    if schedule == "constant":
        return float("inf")
    if schedule == "linear":
        return float(train.get("decay_start", 0.5)) * int(train["iterations"])
    return 0.0  # poly decays from the first iteration: only runs of the same length compare


def dev_dice(project: Path) -> None:
    """Dev-split Dice of the fast setting next to fp32's (config/dev_scale.yaml: same seeds, same
    warm start, both directions), at every kept checkpoint both ran: mean over classes and volumes,
    then over seeds; the paired difference is fast - fp32 per (direction, seed). Rows where the two
    runs' learning-rate paths differ (runs of different length decay at different points) are
    marked: only the rows marked "same lr" compare the precision alone."""
    root = project / "results" / "evaluation" / "synthetic_dev"

    def curve(exp: str) -> tuple[dict[tuple[str, int], float], dict[str, Any]]:
        out, train = {}, {}
        for f in sorted(root.glob(f"{exp}/seed*/metrics.json")):
            doc = json.loads(f.read_text())
            train = doc["experiment"]["train"]
            points = [*doc.get("checkpoints", {}).get("per_iteration", []), {"iteration": train["iterations"], "cases": doc["cases"]}]
            for point in points:  # the kept checkpoints, then the final model
                dice = [statistics.mean(c["dice"].values()) for c in point["cases"]]
                out[f.parent.name, point["iteration"]] = statistics.mean(dice)
        return out, train

    rows = []
    same_until = float("inf")
    for direction in ("mr2ct", "ct2mr"):
        (fast, fast_train), (fp32, fp32_train) = curve(f"sifa_fast_{direction}"), curve(f"sifa_fp32_{direction}")
        if fast_train and fp32_train:
            same_until = min(same_until, constant_until(fast_train), constant_until(fp32_train))
        rows += [(direction, seed, it, fast[seed, it], fp32[seed, it]) for (seed, it) in sorted(fast.keys() & fp32.keys(), key=lambda k: (k[1], k[0]))]
    if not rows:
        sys.exit(f"no paired sifa_fast_*/sifa_fp32_* checkpoints under {root} (run config/dev_scale.yaml there first)")
    print(f"\ndev-split Dice (synthetic_dev, {project}): fast (bf16 + channels_last + fused Adam) vs fp32, same seeds and warm start")
    print(f"{'iteration':>9s} {'pairs':>5s} {'fast':>7s} {'fp32':>7s} {'fast - fp32':>12s} {'min':>7s} {'max':>7s}  lr path")
    for it in sorted({r[2] for r in rows}):
        sub = [r for r in rows if r[2] == it]
        diffs = [r[3] - r[4] for r in sub]
        print(f"{it:9d} {len(sub):5d} {statistics.mean(r[3] for r in sub):7.3f} {statistics.mean(r[4] for r in sub):7.3f} "
              f"{statistics.mean(diffs):+12.3f} {min(diffs):+7.3f} {max(diffs):+7.3f}  {'same lr' if it <= same_until else 'differs'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=5, help="timed rounds (each times every variant once)")
    ap.add_argument("--scales", nargs="+", default=["demo", "paper"], choices=list(SCALES))
    ap.add_argument("--settings", nargs="+", default=["fp32", "bf16", "fast"], choices=list(SETTINGS))
    ap.add_argument("--straight", nargs="*", default=["fp32", "fast"], choices=list(SETTINGS), help="settings that also get the straight-line loop")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--amortise", type=int, default=500, help="iterations over which a compile is paid (the demo's 500)")
    ap.add_argument("--dev-project", type=Path, help="a finished `config/dev_scale.yaml` run: print the fast setting's dev-split Dice next to fp32's")
    args = ap.parse_args()
    if args.dev_project:
        dev_dice(args.dev_project)
        if not args.iters:
            return
    if args.threads:
        torch.set_num_threads(args.threads)
    for scale in args.scales:
        run_scale(scale, args.settings, [s for s in args.straight if s in args.settings], args.iters, args.amortise)


if __name__ == "__main__":
    main()

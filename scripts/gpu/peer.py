"""PyTorch eager peer of `covidx train --bench`: torchvision's DenseNet-121 (3 classes), the
same batch, image side, precision, memory format and trainable part, the same step (u8 batch
from pinned host memory, non-blocking copy, scale/normalise/3 channels on the device,
autocast forward, cross-entropy, backward, fused Adam, gradients set to None), timed the
same way (warm-up steps, then a synchronised window). Prints one JSON line.

    python scripts/gpu/peer.py --size 224 --batch 32 --precision bf16 --channels-last
"""

import argparse
import json
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--trainable", choices=["all", "head"], default="all")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = torchvision.models.densenet121(num_classes=3).to(dev)
    if a.trainable == "head":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("classifier."))
        # Frozen batch norms in eval mode, as covidx does.
        model.train()
        for m in model.features.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    else:
        model.train()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda" if cuda else "cpu", enabled=a.precision == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.precision]
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)
    loss_fn = torch.nn.CrossEntropyLoss()

    # A pool of distinct u8 images in pinned memory, batches taken in turn.
    pool = 64
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (pool * a.batch, 1, a.size, a.size), dtype=torch.uint8,
                           generator=g)
    labels = torch.arange(pool * a.batch) % 3
    if cuda:
        images, labels = images.pin_memory(), labels.pin_memory()

    def step(i):
        k = i % pool
        x = images[k * a.batch:(k + 1) * a.batch].to(dev, non_blocking=True)
        y = labels[k * a.batch:(k + 1) * a.batch].to(dev, non_blocking=True)
        x = ((x.float() / 255.0).expand(-1, 3, -1, -1) - mean) / std
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(dev.type, dtype=dtype, enabled=a.precision != "fp32"):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    for i in range(a.warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    total = torch.zeros((), device=dev)
    for i in range(a.steps):
        total += step(a.warmup + i)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    assert torch.isfinite(total).item(), "the peer's loss is not finite"
    used = None
    if cuda:
        free, whole = torch.cuda.mem_get_info()
        used = (whole - free) / 2**20
    print(json.dumps({
        "what": "pytorch-eager",
        "device": str(dev),
        "size": a.size,
        "batch": a.batch,
        "precision": a.precision,
        "channels_last": a.channels_last,
        "trainable": a.trainable,
        "steps": a.steps,
        "images_per_s": a.steps * a.batch / dt,
        "step_ms": dt * 1e3 / a.steps,
        "device_memory_used_mib": used,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

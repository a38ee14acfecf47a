"""Reference values from torchvision's DenseNet-121 for tests/train.rs (no weights downloaded).

usage: densenet_reference.py OUT_DIR SIZE [SIZE ...]
Writes OUT_DIR/weights.safetensors (a randomly initialised densenet121(num_classes=3), seed 0)
and, per SIZE, OUT_DIR/ref-SIZE.safetensors with: `input` (u8 [2,1,S,S]), `logits` (eval mode),
`loss` (cross-entropy of one training-mode forward with labels [0, 2]) and `grad.<name>` for a
few parameters. Input: x/255, repeated to 3 channels, ImageNet mean/std (covidx's default).
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file

out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
model = torchvision.models.densenet121(num_classes=3)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/weights.safetensors")
state = {k: v.clone() for k, v in model.state_dict().items()}
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
GRADS = ["features.conv0.weight", "features.denseblock2.denselayer5.conv1.weight",
         "features.norm5.weight", "classifier.weight", "classifier.bias"]
for s in sizes:
    model.load_state_dict(state)
    g = torch.Generator().manual_seed(s)
    x8 = torch.randint(0, 256, (2, 1, s, s), dtype=torch.uint8, generator=g)
    x = ((x8.float() / 255.0).expand(2, 3, s, s) - mean) / std
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train()
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
    loss.backward()
    params = dict(model.named_parameters())
    ref = {"input": x8, "logits": logits, "loss": loss.detach().reshape(1)}
    ref.update({f"grad.{n}": params[n].grad.contiguous() for n in GRADS})
    save_file(ref, f"{out}/ref-{s}.safetensors")
print("ok")

"""Loads covidx's weights into torchvision: densenet_load_ours.py WEIGHTS.safetensors CLASSES.
strict load_state_dict (every key, every shape), then one eval forward; prints `ok`."""
import sys

import torch
import torchvision
from safetensors.torch import load_file

model = torchvision.models.densenet121(num_classes=int(sys.argv[2]))
model.load_state_dict(load_file(sys.argv[1]), strict=True)
model.eval()
with torch.no_grad():
    model(torch.zeros(1, 3, 64, 64))
print("ok")

"""Reads a `covidx export --format webdataset|hf` with the loaders PyTorch trainers use and
checks it against the build's own shards (read with safetensors): every sample exactly once,
labels, class names and pixels equal.

usage: check_export.py webdataset|hf EXPORT_DIR BUILD_DIR
Prints one JSON line {"ok": true, "splits": {split: samples}, ...}; exits non-zero on a
mismatch, with the sample named.
"""

import hashlib
import json
import os
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file


def reference(build, all_copies):
    """{split: {(record, copy): (label, pixels HxW u8)}} from the build's shards."""
    index = json.load(open(os.path.join(build, "shards", "index.json")))
    out = {}
    for split, shards in index["splits"].items():
        samples = {}
        for shard in shards:
            t = load_file(os.path.join(build, "shards", split, shard["file"]))
            for i in range(t["labels"].shape[0]):
                rec, copy = int(t["record"][i]), int(t["copy"][i])
                if copy != 0 and not all_copies:
                    continue
                assert (rec, copy) not in samples, f"{split}: ({rec}, {copy}) twice in the build"
                samples[(rec, copy)] = (int(t["labels"][i]), t["images"][i, 0])
        out[split] = samples
    return index["classes"], out


def check_files(export_dir, record):
    for files in record["splits"].values():
        for f in files:
            data = open(os.path.join(export_dir, f["file"]), "rb").read()
            assert len(data) == f["bytes"], f"{f['file']}: {len(data)} bytes, record says {f['bytes']}"
            got = hashlib.sha256(data).hexdigest()
            assert got == f["sha256"], f"{f['file']}: sha256 {got}, record says {f['sha256']}"


def same(split, key, label, pixels, want):
    assert key in want, f"{split}: sample {key} is not in the build"
    wl, wp = want[key]
    assert label == wl, f"{split}: sample {key} has label {label}, the build {wl}"
    assert pixels.dtype == np.uint8 and pixels.shape == wp.shape, (
        f"{split}: sample {key} pixels {pixels.dtype}{pixels.shape}, build {wp.shape}")
    assert np.array_equal(pixels, wp), f"{split}: sample {key} pixels differ from the build"


def check_webdataset(export_dir, record, classes, ref):
    import webdataset as wds

    world, workers = 2, 2
    counts = {}
    for split, files in record["splits"].items():
        urls = [os.path.join(export_dir, f["file"]) for f in files]
        seen = {}
        for rank in range(world):
            for worker in range(workers):
                # What torch.distributed and a DataLoader worker tell webdataset.
                os.environ.update(RANK=str(rank), WORLD_SIZE=str(world),
                                  WORKER=str(worker), NUM_WORKERS=str(workers))
                ds = (wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                                     workersplitter=wds.split_by_worker, empty_check=False)
                      .decode("l8").to_tuple("__key__", "png", "cls", "json"))
                for key, pixels, cls, meta in ds:
                    k = (meta["record"], meta["copy"])
                    assert key == f"{k[0]:07}_{k[1]}", f"{split}: key {key} vs its json {k}"
                    assert k not in seen, f"{split}: {key} read by {seen[k]} and ({rank}, {worker})"
                    seen[k] = (rank, worker)
                    assert meta["class"] == classes[cls] and meta["label"] == cls, key
                    assert meta["split"] == split, key
                    same(split, k, cls, pixels, ref[split])
        missing = set(ref[split]) - set(seen)
        assert not missing, f"{split}: {len(missing)} samples never read, e.g. {sorted(missing)[:3]}"
        # Whole shards go to one (node, worker) each.
        assert len({v for v in seen.values()}) == min(len(urls), world * workers), seen
        counts[split] = len(seen)
    for v in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        os.environ.pop(v)
    return counts


def check_hf(export_dir, record, classes, ref):
    import datasets

    cache = tempfile.mkdtemp(prefix="covidx-hf-cache-")
    loaded = {
        "parquet data_dir": datasets.load_dataset(
            "parquet", data_dir=os.path.join(export_dir, "data"), cache_dir=cache),
        "dataset card": datasets.load_dataset(export_dir, cache_dir=cache),
    }
    counts = {}
    for how, dd in loaded.items():
        assert sorted(dd.keys()) == sorted(ref.keys()), f"{how}: splits {list(dd.keys())}"
        for split, ds in dd.items():
            label = ds.features["label"]
            assert isinstance(label, datasets.ClassLabel), f"{how}: label is {label}"
            assert label.names == classes, f"{how}: class names {label.names}"
            assert isinstance(ds.features["image"], datasets.Image), ds.features["image"]
            assert ds.num_rows == len(ref[split]), f"{how} {split}: {ds.num_rows} rows"
            seen = set()
            for row in ds:
                k = (row["record"], row["copy"])
                assert k not in seen, f"{how} {split}: {k} twice"
                seen.add(k)
                img = row["image"]
                assert img.mode == "L", f"{how} {split}: {k} mode {img.mode}"
                same(split, k, row["label"], np.asarray(img), ref[split])
            counts[split] = len(seen)
    return counts


def main():
    kind, export_dir, build = sys.argv[1:4]
    record = json.load(open(os.path.join(export_dir, "export.json")))
    assert record["format"] == "covidx-export" and record["kind"] == kind, record["kind"]
    classes, ref = reference(build, record["all_copies"])
    assert record["classes"] == classes
    check_files(export_dir, record)
    counts = {"webdataset": check_webdataset, "hf": check_hf}[kind](export_dir, record, classes, ref)
    want = {s: len(v) for s, v in ref.items()}
    assert counts == want, f"read {counts}, the build has {want}"
    print(json.dumps({"ok": True, "kind": kind, "splits": counts}))


if __name__ == "__main__":
    main()

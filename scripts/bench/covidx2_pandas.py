#!/usr/bin/env python3
"""COVIDx2 metadata-only build in pandas: the rules of COVID-Net's create_COVIDx_v3.ipynb
(the peer that `covidx build pipelines/covidx2.toml --metadata-only` is measured against).

usage: covidx2_pandas.py SOURCES OUT
Reads the same sources layout as covidx, checks that image files exist (no image is read), and
writes OUT/train.txt and OUT/test.txt (the test pool; or the pinned list when present).
"""
import os
import sys

import numpy as np
import pandas as pd


def main(src, out):
    cohen_dir = os.path.join(src, "covid-chestxray-dataset")
    fig1_dir = os.path.join(src, "Figure1-COVID-chestxray-dataset")
    rsna_dir = os.path.join(src, "rsna-pneumonia-detection-challenge")
    cn = os.path.join(src, "COVID-Net")
    mapping = {"COVID-19": "COVID-19", "SARS": "pneumonia", "MERS": "pneumonia",
               "Streptococcus": "pneumonia", "Klebsiella": "pneumonia",
               "Chlamydophila": "pneumonia", "Legionella": "pneumonia", "Normal": "normal",
               "Lung Opacity": "pneumonia", "1": "pneumonia"}
    views = ["PA", "AP", "AP Supine", "AP semi erect", "AP erect"]
    cohen = pd.read_csv(os.path.join(cohen_dir, "metadata.csv"))
    cohen = cohen[cohen.view.isin(views)]
    fig1 = pd.read_csv(os.path.join(fig1_dir, "metadata.csv"), encoding="ISO-8859-1")

    entries = {"normal": [], "pneumonia": [], "COVID-19": []}
    for _, row in cohen.iterrows():
        f = row["finding"].split(",")[0]
        if f in mapping:
            if os.path.exists(os.path.join(cohen_dir, "images", row["filename"])):
                entries[mapping[f]].append([str(row["patientid"]), row["filename"], mapping[f]])
    for _, row in fig1.iterrows():
        if str(row["finding"]) != "nan":
            f = row["finding"].split(",")[0]
            if f in mapping:
                for ext in (".jpg", ".png"):
                    if os.path.exists(os.path.join(fig1_dir, "images", row["patientid"] + ext)):
                        entries[mapping[f]].append([row["patientid"], row["patientid"] + ext, mapping[f]])
                        break

    test_patients = {"pneumonia": ["8", "31"], "normal": [],
                     "COVID-19": ["19", "20", "36", "42", "86", "94", "97", "117", "132", "138",
                                  "144", "150", "163", "169"]}
    train, test, seen = [], [], {}
    for key in ["normal", "pneumonia", "COVID-19"]:
        for e in entries[key]:
            imgs = seen.setdefault(e[0], [])
            if e[1] in imgs:
                continue
            imgs.append(e[1])
            (test if e[0] in test_patients[key] else train).append(e)

    classes = pd.read_csv(os.path.join(rsna_dir, "stage_2_detailed_class_info.csv"))
    labels = pd.read_csv(os.path.join(rsna_dir, "stage_2_train_labels.csv"))
    patients = {"normal": list(classes[classes["class"] == "Normal"].patientId),
                "pneumonia": list(labels[labels.Target == 1].patientId)}
    for key in ["normal", "pneumonia"]:
        pool = set(np.load(os.path.join(cn, f"rsna_test_patients_{key}.npy")))
        for p in patients[key]:
            if p in seen:
                continue
            seen[p] = [p]
            if not os.path.exists(os.path.join(rsna_dir, "stage_2_train_images", p + ".dcm")):
                continue
            (test if p in pool else train).append([p, p + ".png", key])

    pinned = os.path.join(cn, "test_COVIDx2.txt")
    if os.path.exists(pinned):
        keep = {tuple(l.split()[:2]) for l in open(pinned)}
        test = [e for e in test if (e[0], e[1]) in keep]
    os.makedirs(out, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(os.path.join(out, name + ".txt"), "w") as f:
            f.writelines(" ".join(r) + "\n" for r in rows)
    print(f"train {len(train)} test {len(test)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

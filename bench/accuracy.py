#!/usr/bin/env python3
"""POST the held-out flowers to an API's /predict in one request; print its accuracy as JSON.

    accuracy.py URL HELDOUT_JSON   # HELDOUT_JSON: {"items": [...], "labels": [...]}
Standard library only. Exit 1 when the API does not answer with one prediction per flower.
"""

import json
import sys
import urllib.request

url, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    heldout = json.load(f)
request = urllib.request.Request(
    url.rstrip("/") + "/predict",
    data=json.dumps({"items": heldout["items"]}).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=30) as response:
    predictions = json.load(response)["predictions"]
if len(predictions) != len(heldout["labels"]):
    sys.exit(f"{url}: {len(predictions)} predictions for {len(heldout['labels'])} flowers")
correct = sum(p["class_index"] == y for p, y in zip(predictions, heldout["labels"]))
print(json.dumps({"correct": correct, "total": len(predictions), "accuracy": correct / len(predictions)}))

"""Train the course's model at image build: RandomForestClassifier(n_estimators=200) on the same
stratified split as stack/api/train.py (seed 42, test_size 0.3), pickled with joblib.

Also writes the 45 held-out flowers and their true labels (heldout.json), which bench/run
sends to both APIs to check their accuracy the same way.
"""

import json
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

SEED = 42
TEST_SIZE = 0.3
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")

iris = load_iris()
x_train, x_test, y_train, y_test = train_test_split(
    iris.data, iris.target, test_size=TEST_SIZE, stratify=iris.target, random_state=SEED
)
model = RandomForestClassifier(n_estimators=200, random_state=SEED).fit(x_train, y_train)
classes = [str(name) for name in iris.target_names]
joblib.dump({"model": model, "classes": classes}, "model.joblib")
heldout = {
    "items": [dict(zip(FEATURES, map(float, row), strict=True)) for row in x_test],
    "labels": [int(y) for y in y_test],
    "classes": classes,
}
with open("heldout.json", "w") as f:
    json.dump(heldout, f)
accuracy = model.score(x_test, y_test)
print(f"random forest (200 trees): {len(y_train)} train / {len(y_test)} test, held-out accuracy {accuracy:.4f}")
sys.exit(0)

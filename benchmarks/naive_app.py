"""The naive baseline: a minimal Flask app calling Keras `model.predict` per request.

This is what most tutorials serve; it is kept here for comparison only, never in the product.
Run: MODEL_PATH=models/cats_vs_dogs/1/model.keras gunicorn 'benchmarks.naive_app:create_app()'
"""

import io
import os

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image


def create_app() -> Flask:
    import keras

    model = keras.models.load_model(os.environ["MODEL_PATH"], compile=False)
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        image = Image.open(io.BytesIO(request.get_data())).convert("RGB").resize((150, 150))
        batch = np.asarray(image, dtype=np.float32)[None]
        p = float(model.predict(batch, verbose=0)[0, 0])
        return jsonify({"probabilities": {"cats": 1 - p, "dogs": p}})

    return app

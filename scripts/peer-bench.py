# The peer system of `alpr-bench edge recognize`: fast-alpr 0.4's own pipeline
# with its defaults (detector threshold 0.4, one crop per detected box, one
# OCR model), on the same ONNX model files as ours (YOLOv9-t 416 end-to-end
# detector, the cct_xs v2 global OCR; as the team's
# shared/tools/peer-fastalpr.py). The comparison is system against system:
# ours brings its own thresholds, OCR ensemble and crop margins. Timed the
# way the bench times ours: the ONNX Runtime thread count the bench passes,
# one warm-up photo that is not timed, and a time for every photo (file
# read + decode + predict), so the bench can give p50/p95 for both. The
# scoring (and the paired difference) is the bench's, not this script's.
#
# usage: python peer-bench.py MODELS_DIR THREADS OCR_NAME IMAGE...
# prints one JSON object per image: {"file", "ms", "plates": [best first]}
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import cv2  # noqa: E402
import onnxruntime  # noqa: E402
from fast_alpr import ALPR  # noqa: E402
from fast_alpr.base import BaseDetector  # noqa: E402
from open_image_models import create_detector  # noqa: E402

models, threads, ocr_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
images = sys.argv[4:]

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1


class Detector(BaseDetector):
    def __init__(self):
        self.inner = create_detector(
            f"{models}/yolo-v9-t-416-license-plates-end2end1.onnx",
            backend="yolo_v9",
            class_labels=["License Plate"],
            conf_thresh=0.4,
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )

    def predict(self, frame):
        return self.inner.predict(frame)


alpr = ALPR(
    detector=Detector(),
    ocr_model=None,
    ocr_model_path=f"{models}/{ocr_name}.onnx",
    ocr_config_path=f"{models}/{ocr_name}_plate_config.yaml",
    ocr_device="cpu",
    ocr_sess_options=options,
)


def read(path):
    frame = cv2.imread(path)
    if frame is None:
        raise ValueError(f"cannot decode {path}")
    found = sorted(alpr.predict(frame), key=lambda r: -r.detection.confidence)
    return [r.ocr.text if r.ocr else "" for r in found]


if images:
    read(images[0])  # warm-up, not timed

for path in images:
    start = time.perf_counter()
    try:
        plates, error = read(path), None
    except Exception as e:  # one bad photo is a miss, not the end of the run
        plates, error = [], str(e)
    ms = (time.perf_counter() - start) * 1e3
    print(json.dumps({"file": path, "ms": ms, "plates": plates, "error": error}), flush=True)

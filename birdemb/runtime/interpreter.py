"""Run a TFLite model in fixed batches, on whichever TFLite runtime is installed.

The one runner for extraction, bundling and submission; it imports nothing from birdemb but
the allocator's tuning, so the single-file Kaggle script inlines it as it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.runtime.allocator import keep_freed_memory


def interpreter_class():
    """The first TFLite interpreter available: ai-edge-litert, tflite-runtime, then tf.lite
    (Kaggle images carry TensorFlow; importing it is the last resort, not the plan)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteRunner:
    """One interpreter, fed fixed batches of frames [n, samples]; the tensors are resized
    only when the batch shape changes."""

    def __init__(self, model: bytes | str | Path, threads: int = 1, batch: int = 16):
        keep_freed_memory()  # each batch's arrays reuse the last one's pages (see runtime.allocator)
        if isinstance(model, (bytes, bytearray)):
            self._interpreter = interpreter_class()(model_content=bytes(model), num_threads=max(1, threads))
        else:
            self._interpreter = interpreter_class()(model_path=str(model), num_threads=max(1, threads))
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        self._batch = max(1, batch)
        self._shape = None

    def run(self, frames: np.ndarray, prepare=None) -> list[np.ndarray]:
        """All outputs for `frames`, in the model's output order; `prepare(chunk)`, if given,
        turns each batch of frames into the model's input just before it runs (a front end)."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        results: list[list[np.ndarray]] = [[] for _ in self._outputs]
        for start in range(0, len(frames), self._batch):
            chunk = frames[start : start + self._batch]
            if prepare is not None:
                chunk = np.ascontiguousarray(prepare(chunk), dtype=np.float32)
            if self._shape != chunk.shape:
                self._interpreter.resize_tensor_input(self._input, list(chunk.shape), strict=False)
                self._interpreter.allocate_tensors()
                self._shape = chunk.shape
            self._interpreter.set_tensor(self._input, chunk)
            self._interpreter.invoke()
            for slot, index in zip(results, self._outputs):
                slot.append(self._interpreter.get_tensor(index).copy())
        return [np.concatenate(parts) for parts in results]

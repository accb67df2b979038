"""A backbone for tests that kills its own process on one recognisable input, the way a
decoder segfault would, to test that extraction survives a dying worker."""
import os
import signal

import numpy as np

from birdemb.backbones.birdnet import BirdNET

POISON = 0.123  # a file whose samples are all this value kills the worker


class CrashingBirdNET(BirdNET):
    name = "crashing"

    def embed(self, frames):
        if np.allclose(frames[0][:1000], POISON, atol=1e-3):
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().embed(frames)


class UnstartableBirdNET(BirdNET):
    """Loads in the job's own process but not in its workers, as when a worker cannot import
    or load the model (another environment, a missing library)."""

    name = "unstartable"

    def __init__(self, *args, **kwargs):
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            raise RuntimeError("this worker cannot load the model")
        super().__init__(*args, **kwargs)

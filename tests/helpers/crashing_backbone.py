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

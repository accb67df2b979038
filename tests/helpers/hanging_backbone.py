"""The toy backbone, made to hang on one recognisable input, to keep pool workers busy in
tests that interrupt a job: a file whose samples are all HANG_LEVEL makes embed() sleep
BIRDEMB_TEST_HANG_S seconds first (default 0, so a rerun in the test's own process does not
hang). The rows are the toy's, so an interrupted run compares with an uninterrupted one."""
import os
import time

import numpy as np

from tests.helpers.toy_backbone import ToyBackbone

HANG_LEVEL = 0.456
HANG_VARIABLE = "BIRDEMB_TEST_HANG_S"


class HangingToyBackbone(ToyBackbone):
    name = "hangtoy"

    def embed(self, frames):
        if np.allclose(frames[0][:1000], HANG_LEVEL, atol=1e-3):
            time.sleep(float(os.environ.get(HANG_VARIABLE, "0")))
        return super().embed(frames)

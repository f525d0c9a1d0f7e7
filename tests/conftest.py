import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def frames():
    """(train, test) paths of the demo frames that ship inside the package."""
    from hyperchroma.demo import demo_frames

    return demo_frames()


@pytest.fixture(scope="session")
def model(frames):
    """The demo model (fit on the 8 shipped keyframes), fitted once per test session."""
    import hyperchroma as hc

    return hc.fit(frames[0])


@pytest.fixture(scope="session")
def demo_small(frames):
    """A model fit on 2 of the shipped keyframes, once per session."""
    import hyperchroma as hc

    return hc.fit(frames[0][:2])

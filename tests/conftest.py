"""Test session set-up: one torch thread, ``--runslow``, one CATH fixture dataset for the whole
session, and kernel bases cached in a folder of the session instead of ``~/.cache/cathnet``."""
import os

# One thread per process, set before torch loads: the tests' tensors are small, and on a
# shared machine threads spend far longer waiting for each other than computing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from cath_helpers import build_fixture_dataset  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def basis_cache(tmp_path_factory):
    """$CATHNET_CACHE for this session (inherited by the processes the tests start)."""
    before = os.environ.get("CATHNET_CACHE")
    os.environ["CATHNET_CACHE"] = str(tmp_path_factory.mktemp("cathnet-cache"))
    yield
    if before is None:
        del os.environ["CATHNET_CACHE"]
    else:
        os.environ["CATHNET_CACHE"] = before


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """The CATH fixture domains as a dataset (``N_SPLITS`` splits), built once; do not modify."""
    return build_fixture_dataset(tmp_path_factory.mktemp("data") / "fixtures.npz")

import steadyserve


def test_public_surface_is_pinned():
    assert steadyserve.__all__ == ["Batch", "Service", "__version__", "handler"]
    for name in steadyserve.__all__:
        assert hasattr(steadyserve, name)

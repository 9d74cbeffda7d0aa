import steadyserve


def test_public_surface_is_pinned():
    assert steadyserve.__all__ == [
        "Batch", "Client", "Forbidden", "GatewayError", "HandlerFailed", "InvalidInput", "RateLimited",
        "Service", "ServiceUnavailable", "SteadyError", "Unauthorized", "UnknownHandler", "__version__",
        "handler",
    ]
    for name in steadyserve.__all__:
        assert hasattr(steadyserve, name)

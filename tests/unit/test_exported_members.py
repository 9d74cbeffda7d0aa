import steadyserve


def test_public_surface_is_pinned():
    assert steadyserve.__all__ == [
        "AsyncClient", "Batch", "Caller", "ChatMessage", "Client", "File", "Forbidden", "GatewayError", "HandlerFailed",
        "InvalidInput", "PayloadTooLarge", "RateLimited", "Service", "ServiceUnavailable", "SteadyError",
        "StreamInterrupted", "Unauthorized", "UnknownHandler", "__version__", "current_caller", "handler",
    ]
    for name in steadyserve.__all__:
        assert hasattr(steadyserve, name)

"""The smallest service: returns the message it was given."""

from steadyserve import Service, handler


class Echo(Service):
    @handler
    def echo(self, message: str) -> dict[str, str]:
        return {"message": message}

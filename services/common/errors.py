"""Domain errors shared by the services, each tied to one gRPC status code.

Servicers raise these; :func:`services.common.grpc_server.grpc_errors` turns them into a precise
status, and the gateway maps statuses to HTTP in one place.
"""

import grpc


class ServiceError(Exception):
    """Base class: an error with a status code and a message safe to show a client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class TooLarge(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Conflict(ServiceError):
    """The request is well formed but contradicts the service's state (e.g. another model's vectors)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServiceError):
    """The service cannot answer right now (model or index still loading, or shutting down).

    Health says NOT_SERVING meanwhile, so clients may retry elsewhere or later.
    """

    code = grpc.StatusCode.UNAVAILABLE

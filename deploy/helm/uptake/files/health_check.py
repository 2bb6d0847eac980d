"""Check that a gRPC server reports SERVING; exit 0 if so, 1 otherwise.

Usage: python health_check.py TARGET [SERVICE]
TARGET is a gRPC target (host:port, or dns:///host:port to ask every address
the name resolves to); SERVICE is the grpc.health.v1 service name ("" = the
whole server). Run by the chart's `helm test` pod and the compose healthcheck,
with the uptake-server image's own Python and grpcio.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 10.0


def check(target: str, service: str) -> bool:
    """Ask TARGET for the health of SERVICE and report what it says."""
    serving = health_pb2.HealthCheckResponse.SERVING
    options = [("grpc.lb_policy_name", "round_robin")]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=TIMEOUT_SECONDS,
                wait_for_ready=True,
            )
        except grpc.RpcError as error:
            print(f"{target} {service or '(server)'}: {error.code().name} {error.details()}")
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target} {service or '(server)'}: {status}")
    return reply.status == serving


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} TARGET [SERVICE]")
    sys.exit(0 if check(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "") else 1)

"""An OTLP/gRPC trace receiver for the tests: writes each span it receives as a JSON line.

Usage: python otlp_receiver.py PORT OUT_FILE [--stall]

Prints "ready" once it listens. With --stall it takes each export and never answers, as a
receiver that hangs would. Needs PyPI's opentelemetry-proto and grpcio (.ci/run installs
them, pinned, into $HOME/.cache/12st-mall/otlp-venv).
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out, stall):
        self.out = out
        self.stall = stall
        self.lock = threading.Lock()

    def Export(self, request, context):
        if self.stall:
            threading.Event().wait()
        lines = []
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                None,
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(
                        json.dumps(
                            {
                                "service": service,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex() or None,
                                "name": span.name,
                                "kind": KINDS.get(span.kind, str(span.kind)),
                                "links": [link.span_id.hex() for link in span.links],
                            }
                        )
                    )
        with self.lock:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    stall = "--stall" in sys.argv[3:]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    with open(path, "a", encoding="utf-8") as out:
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(out, stall), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()


if __name__ == "__main__":
    main()

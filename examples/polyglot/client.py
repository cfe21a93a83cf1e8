"""The polyglot example's Python side: lists the gateway's services by
reflection, calls the actor-served service shop.Orders, then the gateway's
own Send, with stubs from stock protoc.

    client.py STUBS_DIR HOST:PORT
"""

import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from courier.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from shop import orders_pb2, orders_pb2_grpc  # noqa: E402
from reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402

channel = grpc.insecure_channel(sys.argv[2])

# 0. What the gateway serves, as grpcurl's "list" asks: its own services,
#    and those actors declared at spawn.
reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
answers = reflection.ServerReflectionInfo(
    iter([reflection_pb2.ServerReflectionRequest(list_services="*")]),
    timeout=5)
listed = sorted(s.name for a in answers
                for s in a.list_services_response.service)
print("reflection lists:", ", ".join(listed))

# 1. The service, as if the actor were any gRPC server.
orders = orders_pb2_grpc.OrdersStub(channel)
placed = orders.Place(orders_pb2.PlaceOrder(item="widget", quantity=2),
                      timeout=5)
print("python -> shop.Orders/Place:", placed.order_id, placed.item,
      placed.quantity)

# 2. The same actor by name, through the gateway's Send.
gateway = gateway_pb2_grpc.GatewayStub(channel)
request = any_pb2.Any()
request.Pack(orders_pb2.PlaceOrder(item="gadget", quantity=3))
reply = gateway.Send(gateway_pb2.SendRequest(name="orders", message=request),
                     timeout=5)
answer = orders_pb2.Placed()
reply.reply.Unpack(answer)
print("python -> Gateway/Send orders:", answer.order_id, answer.item,
      answer.quantity)

ok = ("shop.Orders" in listed and placed.order_id == "order-1"
      and answer.order_id == "order-2")
sys.exit(0 if ok else 1)
